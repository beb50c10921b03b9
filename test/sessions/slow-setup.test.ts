import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE_LABS, startTestStack, type TestStack } from '../helpers/stack.js';
import { runCli } from '../cli-client/fixtures/run-cli.js';

const ONE = 'v1.30-1node';
/** The prepare tool inventory's time limit in this file (the default is 60 s). */
const INVENTORY_SECONDS = 3;

/**
 * At a class-sized burst every lab setup runs at once and the guests are
 * slow: the lab's setup step runs out of its time. That used to count as a
 * broken env — the student moved to the next warm env and the env was torn
 * down and rebuilt, so each slow setup took two envs and the pool drained
 * (issue #12). The sim's `slowGuestCommandsMs` fault makes every guest
 * command start that much later, as a starved guest does.
 */
describe('a slow guest is not a broken env', () => {
  let stack: TestStack;
  const labsDir = mkdtempSync(join(tmpdir(), 'labvirt-slow-labs-'));

  beforeAll(async () => {
    // fixture-one with a setup step that has 2 s: the faults below make it take longer.
    cpSync(join(FIXTURE_LABS, 'fixture-one'), join(labsDir, 'slow-setup'), { recursive: true });
    writeFileSync(
      join(labsDir, 'slow-setup', 'lab.yaml'),
      `id: slow-setup
title: Slow setup
description: fixture-one with a 2-second setup step, for slow-guest tests.
difficulty: easy
flavor: { kubernetes: '1.30', nodes: 1 }
timeLimitMinutes: 30
hints: [Look at /etc/fixture/state.]
setup:
  - { node: control-plane, script: setup.sh, timeoutSeconds: 2 }
checks:
  - { name: fixed, description: The state file says OK, points: 1, node: control-plane, script: check.sh, timeoutSeconds: 30 }
solve:
  - { node: control-plane, script: solve.sh, timeoutSeconds: 30 }
`,
    );
    // fixture-one with plenty of setup time: only the tool inventory (3 s here) runs out.
    cpSync(join(FIXTURE_LABS, 'fixture-one'), join(labsDir, 'slow-inventory'), {
      recursive: true,
    });
    writeFileSync(
      join(labsDir, 'slow-inventory', 'lab.yaml'),
      `id: slow-inventory
title: Slow inventory
description: fixture-one with time for its setup, for slow tool-inventory tests.
difficulty: easy
flavor: { kubernetes: '1.30', nodes: 1 }
timeLimitMinutes: 30
hints: [Look at /etc/fixture/state.]
setup:
  - { node: control-plane, script: setup.sh, timeoutSeconds: 60 }
checks:
  - { name: fixed, description: The state file says OK, points: 1, node: control-plane, script: check.sh, timeoutSeconds: 30 }
solve:
  - { node: control-plane, script: solve.sh, timeoutSeconds: 30 }
`,
    );
    stack = await startTestStack({
      overrides: {
        labsDir,
        flavors: { [ONE]: { minWarm: 3, maxTotal: 6 }, 'v1.30-3node': { minWarm: 0 } },
        sessions: { toolInventoryTimeoutSeconds: INVENTORY_SECONDS },
      },
    });
    await stack.fillPool(ONE, 3, { timeoutMs: 90_000 });
  }, 120_000);
  afterEach(() => {
    stack.sim.faults.slowGuestCommandsMs = 0;
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(labsDir, { recursive: true, force: true });
  });

  it('runs a timed-out setup again on the same env with more time: the student gets in, nobody is moved, no env is torn down', async () => {
    const { service, store } = stack.labvirt;
    const warmBefore = await store.warmEnvIds(ONE);
    // 3 s before each command starts: past the step's 2 s, within the retry's 6 s.
    stack.sim.faults.slowGuestCommandsMs = 3000;

    const s = await service.start({ student: 'slowpoke', labId: 'slow-setup' });
    expect(s.state).toBe('claimed');
    const active = await stack.untilSession(s.id, 'active', 60_000);

    expect(active.envId).toBe(s.envId);
    const slow = stack.events.filter(
      (e) => e.type === 'session.setup-slow' && e.sessionId === s.id,
    );
    expect(slow).toEqual([
      expect.objectContaining({
        envId: s.envId,
        step: 'slow-setup/setup.sh',
        node: 'control-plane',
        timeoutSeconds: 2,
        retrySeconds: 6,
      }),
    ]);
    expect(stack.events.some((e) => e.type === 'session.moved')).toBe(false);
    expect(
      stack.events.some((e) => e.type === 'env.state' && e.to === 'failed' && e.envId === s.envId),
    ).toBe(false);
    // The setup ran: the lab's broken state is there for the student to fix.
    stack.sim.faults.slowGuestCommandsMs = 0;
    const check = await service.check(s.id);
    expect(check.passed).toBe(false);
    expect(check.checks[0]?.messages.join('\n')).toMatch(/FIXME/);
    // The pool: only the claimed env left it; every other warm env is still warm.
    for (const envId of warmBefore.filter((id) => id !== s.envId)) {
      expect((await store.getEnv(envId))?.state).toBe('warm');
    }
    expect((await store.getEnv(s.envId!))?.state).toBe('active');
    await service.stop(s.id);
  }, 90_000);

  it('ends the session as "did not finish in time" when even the longer try runs out, and takes no other env', async () => {
    const { service, store } = stack.labvirt;
    await stack.fillPool(ONE, 3, { timeoutMs: 90_000 });
    const warmBefore = await store.warmEnvIds(ONE);
    // 7 s: past the step's 2 s and past the retry's 6 s.
    stack.sim.faults.slowGuestCommandsMs = 7000;

    const s = await service.start({ student: 'slowest', labId: 'slow-setup' });
    const ended = await stack.until(
      async () => {
        const v = await service.status(s.id);
        return v.state === 'ended' ? v : undefined;
      },
      'the session to end',
      60_000,
    );

    expect(ended.endedReason).toBe('failed');
    expect(ended.endedDetail).toMatch(/did not finish in time.*setup\.sh on control-plane/);
    expect(
      stack.events.filter((e) => e.type === 'session.setup-slow' && e.sessionId === s.id),
    ).toHaveLength(1);
    expect(stack.events.some((e) => e.type === 'session.moved')).toBe(false);
    // Nobody else's env was taken: the other warm envs are untouched.
    for (const envId of warmBefore.filter((id) => id !== s.envId)) {
      expect((await store.getEnv(envId))?.state).toBe('warm');
    }
  }, 90_000);
  it('gives a tool inventory that runs out of time one more try on the same env: the student gets in, nobody is moved', async () => {
    const { service, store } = stack.labvirt;
    await stack.fillPool(ONE, 3, { timeoutMs: 90_000 });
    const warmBefore = await store.warmEnvIds(ONE);
    // 4.5 s before each command starts: past the inventory's 3 s, within the
    // retry's 9 s, and well within the setup step's 60 s.
    stack.sim.faults.slowGuestCommandsMs = 4500;

    const s = await service.start({ student: 'slowtools', labId: 'slow-inventory' });
    const active = await stack.untilSession(s.id, 'active', 90_000);

    expect(active.envId).toBe(s.envId);
    expect(
      stack.events.filter((e) => e.type === 'session.setup-slow' && e.sessionId === s.id),
    ).toEqual([
      expect.objectContaining({
        step: "labvirt's tool inventory",
        node: 'control-plane',
        timeoutSeconds: INVENTORY_SECONDS,
        retrySeconds: INVENTORY_SECONDS * 3,
      }),
    ]);
    expect(stack.events.some((e) => e.type === 'session.moved')).toBe(false);
    for (const envId of warmBefore.filter((id) => id !== s.envId)) {
      expect((await store.getEnv(envId))?.state).toBe('warm');
    }
    // The tools were recorded (on the second try): the check grades.
    stack.sim.faults.slowGuestCommandsMs = 0;
    const check = await service.check(s.id);
    expect(check.checks[0]?.messages.join('\n')).toMatch(/FIXME/);
    await service.stop(s.id);
  }, 120_000);

  it('ends the session as "the machines are busy" when the inventory runs out of time twice, and takes no other env', async () => {
    const { service, store } = stack.labvirt;
    await stack.fillPool(ONE, 3, { timeoutMs: 90_000 });
    const warmBefore = await store.warmEnvIds(ONE);
    // 10 s: past the inventory's 3 s and its retry's 9 s; the setup's 60 s is enough.
    stack.sim.faults.slowGuestCommandsMs = 10_000;

    const s = await service.start({ student: 'slowertools', labId: 'slow-inventory' });
    const ended = await stack.until(
      async () => {
        const v = await service.status(s.id);
        return v.state === 'ended' ? v : undefined;
      },
      'the session to end',
      90_000,
    );

    expect(ended.endedReason).toBe('failed');
    expect(ended.endedDetail).toMatch(
      /labvirt's tool inventory on control-plane ran out of 9 s\. The machines are busy/,
    );
    expect(stack.events.some((e) => e.type === 'session.moved')).toBe(false);
    for (const envId of warmBefore.filter((id) => id !== s.envId)) {
      expect((await store.getEnv(envId))?.state).toBe('warm');
    }
  }, 120_000);
  it('tells the student the machines are busy: the API view, the long poll, labvirt start', async () => {
    const { service } = stack.labvirt;
    await stack.fillPool(ONE, 3, { timeoutMs: 90_000 });
    // As in the first test: the setup step runs out of its 2 s and runs again with 6 s.
    stack.sim.faults.slowGuestCommandsMs = 3000;

    const cli = runCli(
      ['start', '--lab', 'slow-setup', '--student', 'patient', '--key-file', join(labsDir, 'k')],
      {
        LABVIRT_API_URL: stack.labvirt.apiUrl!,
        LABVIRT_API_TOKEN: stack.apiToken,
        LABVIRT_CONFIG: undefined,
      },
    );
    const slow = await stack.until(
      async () =>
        (await service.list({ student: 'patient' })).find((s) => s.slow !== undefined)?.slow,
      'the session to be marked slow',
      60_000,
    );
    expect(slow).toMatchObject({
      message: 'the machines are busy: setup is taking longer than usual',
      step: 'slow-setup/setup.sh',
      node: 'control-plane',
      retrySeconds: 6,
    });
    const r = await cli;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      'preparing your environment: the machines are busy: setup is taking longer than usual',
    );
    expect(r.stdout).toContain('state:    active');
    // Once active the note is gone.
    const [active] = await service.list({ student: 'patient' });
    expect(active?.state).toBe('active');
    expect(active?.slow).toBeUndefined();
    await service.stop(active!.id);
  }, 120_000);
});
