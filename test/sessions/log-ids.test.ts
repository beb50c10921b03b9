import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger, type LogLine } from '../helpers/log-lines.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

/**
 * Lines of the pool and sessions modules (component `orchestrator`) that are
 * about the pool as a whole, not one env or session: they carry the flavor.
 * The same list is in docs/operations.md.
 */
const POOL_WIDE = new Set([
  'rebuilt indexes from the host cluster',
  'host cluster is full: not adding envs',
]);

/**
 * labvirt's clock in this file (ctx.now): a year behind the wall clock, as a
 * test's fake clock may be. A time on the log lines taken from the wall clock
 * against one from this clock is off by a year.
 */
const CLOCK_BEHIND_MS = 365 * 24 * 3600_000;

/**
 * Every log line the pool and sessions modules write while working on an env
 * or a session names it (`envId`, `sessionId`), so an operator can follow one
 * through `jq 'select(.envId == "…")'`.
 */
describe('env and session ids on log lines', () => {
  let stack: TestStack;
  let lines: LogLine[] = [];

  beforeAll(async () => {
    const capture = capturingLogger('debug');
    lines = capture.lines;
    stack = await startTestStack({
      now: () => Date.now() - CLOCK_BEHIND_MS,
      logger: capture.logger,
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 3 },
        },
      },
    });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('provision → claim → prepare → check → stop → teardown: every line names its env or session', async () => {
    await stack.fillPool('v1.30-1node', 1, { timeoutMs: 90_000 });
    const s = await stack.labvirt.service.start({ student: 'lina', labId: 'fixture-one' });
    const active = await stack.untilSession(s.id, 'active', 60_000);
    const check = await stack.labvirt.service.check(s.id);
    expect(check.passed).toBe(false);
    await stack.labvirt.service.stop(s.id);
    await stack.until(
      async () => lines.some((l) => l.msg === 'env deleted' && l.envId === active.envId),
      'the env to be torn down',
    );

    const orchestrator = lines.filter((l) => l.component === 'orchestrator');
    // The lifecycle really was logged: provisioning, the session, the teardown.
    expect(orchestrator.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['session active', 'env deleted']),
    );
    const unnamed = orchestrator.filter(
      (l) => !POOL_WIDE.has(l.msg) && l.envId === undefined && l.sessionId === undefined,
    );
    expect(unnamed).toEqual([]);
    // Where the claim's time went, for an operator asking why it was slow:
    // each prepare step's duration on the "session active" line.
    const activeLine = orchestrator.find((l) => l.msg === 'session active' && l.sessionId === s.id);
    expect(activeLine).toMatchObject({
      claimToReadyMs: expect.any(Number),
      queueMs: expect.any(Number),
      steps: {
        read: expect.any(Number),
        namespacePatch: expect.any(Number),
        vmList: expect.any(Number),
        labScripts: expect.any(Number),
        keys: expect.any(Number),
        tools: expect.any(Number),
        activate: expect.any(Number),
        markActive: expect.any(Number),
      },
    });
    // The claim → the prepare job's start, both on labvirt's clock: within
    // the claim's whole time, not a year.
    expect(activeLine!.queueMs).toBeGreaterThanOrEqual(0);
    expect(activeLine!.queueMs).toBeLessThanOrEqual(activeLine!.claimToReadyMs as number);
    // And each guest connection's time, at debug (the executor's component).
    expect(
      lines.some(
        (l) =>
          l.msg === 'guest connected' &&
          l.envId === active.envId &&
          typeof l.connectMs === 'number',
      ),
    ).toBe(true);
    // The session's own lines name both.
    const sessionLines = orchestrator.filter((l) => l.sessionId === s.id);
    expect(sessionLines.length).toBeGreaterThan(0);
    for (const l of sessionLines) expect(l.envId).toBe(active.envId);
  }, 240_000);

  it("a student served from the line is claimed on labvirt's clock: queue times within the claim's", async () => {
    // No warm env of this flavor: the student waits, and the env booted for
    // them is claimed as it turns warm (markEnvWarm), not by the request.
    const s = await stack.labvirt.service.start({ student: 'omar', labId: 'fixture-three' });
    expect(s.state).toBe('waiting');
    await stack.untilSession(s.id, 'active', 120_000);
    const ready = stack.events.find((e) => e.type === 'session.ready' && e.sessionId === s.id);
    if (ready?.type !== 'session.ready') throw new Error(`no session.ready for ${s.id}`);
    expect(ready.queueWaitMs).toBeGreaterThanOrEqual(0);
    expect(ready.queueWaitMs).toBeLessThanOrEqual(ready.claimLatencyMs);
    const activeLine = lines.find((l) => l.msg === 'session active' && l.sessionId === s.id);
    expect(activeLine?.queueMs).toBeGreaterThanOrEqual(0);
    expect(activeLine?.queueMs).toBeLessThanOrEqual(activeLine!.claimToReadyMs as number);
    await stack.labvirt.service.stop(s.id);
  }, 180_000);

  it('a job that fails names the env or session it was for', async () => {
    // Every call to the cluster fails for a moment: preparing the session (or
    // provisioning the env it waits for) fails.
    stack.sim.faults.errorRate = 1;
    try {
      await stack.labvirt.service
        .start({ student: 'nour', labId: 'fixture-one' })
        .catch(() => undefined);
      await stack.until(
        async () => lines.find((l) => l.msg === 'job failed' && l.queue !== 'maintenance'),
        'a prepare or provision job to fail',
        90_000,
      );
    } finally {
      stack.sim.faults.errorRate = 0;
    }
    const failed = lines.filter((l) => l.msg === 'job failed' && l.queue !== 'maintenance');
    expect(failed.length).toBeGreaterThan(0);
    for (const l of failed) expect(l.envId, JSON.stringify(l)).toMatch(/^[a-z0-9]+$/);
  }, 120_000);
});
