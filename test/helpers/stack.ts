import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startDevStack, type DevStack, type DevStackOptions } from '../../src/app/dev.js';
import type { LabvirtHandle } from '../../src/app/index.js';
import { deepMerge } from '../../src/config/index.js';
import type { LabvirtEvent } from '../../src/events/index.js';
import type { SessionView } from '../../src/sessions/types.js';
import { FIXTURE_LABS } from './paths.js';

export { FIXTURE_LABS };

/**
 * The configuration a `labvirt serve` child process needs against a test's
 * simulator and redis-server (fixture labs, their sim scripts), with the
 * test's own settings merged over it.
 */
export function serveConfigFor(
  sim: { kubeconfigPath: string },
  redisUrl: string,
  settings: Record<string, unknown>,
): Record<string, unknown> {
  return deepMerge(
    {
      labsDir: FIXTURE_LABS,
      labScripts: 'sim',
      logLevel: 'warn',
      kube: {
        kubeconfig: sim.kubeconfigPath,
        guestAddressMap: join(dirname(sim.kubeconfigPath), 'guests.json'),
      },
      redis: { url: redisUrl },
      // Beside the simulator's files: one per test, never the working directory's.
      ssh: { gatewayClientKey: join(dirname(sim.kubeconfigPath), 'gateway_client_key') },
    },
    settings,
  );
}

/** How long `until` and `fillPool` wait when the caller names no bound. */
const DEFAULT_WAIT_MS = 30_000;

/** Polls `fn` every 50 ms until it returns a truthy value; past `timeoutMs` throws `failure()`. */
async function pollUntil<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  failure: () => Error,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw failure();
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs one replenish on `labvirt` and waits until `flavor` has at least
 * `atLeast` warm envs. On timeout the error names the flavor, the count
 * wanted and the counts per state at the last look, so a pool that stalled
 * (envs stuck booting, or failed) reads differently from one that was slow.
 */
export async function fillPool(
  labvirt: Pick<LabvirtHandle, 'runMaintenance' | 'store'>,
  flavor: string,
  atLeast: number,
  { timeoutMs = DEFAULT_WAIT_MS }: { timeoutMs?: number } = {},
): Promise<void> {
  await labvirt.runMaintenance('replenish');
  let counts: Partial<Record<string, number>> = {};
  await pollUntil(
    async () => {
      counts = await labvirt.store.countByState(flavor);
      return (counts.warm ?? 0) >= atLeast;
    },
    timeoutMs,
    () => {
      const others = Object.entries(counts)
        .filter(([state, n]) => state !== 'warm' && n)
        .map(([state, n]) => `${n} ${state}`);
      return new Error(
        `timed out after ${timeoutMs / 1000} s waiting for ${atLeast} warm ${flavor} ` +
          `env${atLeast === 1 ? '' : 's'} after a replenish: ${counts.warm ?? 0} warm when it gave up` +
          (others.length ? ` (${others.join(', ')})` : ''),
      );
    },
  );
}

export interface TestStack extends DevStack {
  dir: string;
  events: LabvirtEvent[];
  /** Polls until `fn` returns a truthy value. */
  until<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs?: number): Promise<T>;
  /** Polls a session until it reaches `state`. */
  untilSession(id: string, state: SessionView['state'], timeoutMs?: number): Promise<SessionView>;
  warmCount(flavor: string): Promise<number>;
  /** `fillPool` on this stack's labvirt: one replenish, then at least `atLeast` warm `flavor` envs. */
  fillPool(flavor: string, atLeast: number, options?: { timeoutMs?: number }): Promise<void>;
}

/**
 * A whole labvirt against a real redis-server and the simulator, with the
 * schedules off (tests trigger maintenance themselves) and fast polling.
 */
export async function startTestStack(options: Partial<DevStackOptions> = {}): Promise<TestStack> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'labvirt-e2e-'));
  const stack = await startDevStack({
    ...options,
    dir,
    sim: { speed: 200, ...options.sim },
    roles: { scheduler: false, ...options.roles },
    overrides: deepMerge(
      {
        labsDir: FIXTURE_LABS,
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 2, maxTotal: 10 },
          'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 4 },
        },
        pool: {
          pollSeconds: 0.05,
          jobLockSeconds: 3,
          provisionDeadlineSeconds: 60,
          // stop() waits this long for running jobs before handing them back
          // (src/pool/queues.ts, closeWorker). At the default 30 s a file whose
          // last test left a job running (a prepare of a session stopped
          // mid-setup, a replenish) waited the whole 30 s in its afterAll on
          // a loaded machine: 20–33 s of hooks in slack/front, api/real-service,
          // slack/key-link, pool/sessions. The grace itself is tested with a
          // real `labvirt serve` (test/pool/recovery.test.ts, redis-down).
          shutdownGraceSeconds: 1,
        },
      },
      options.overrides ?? {},
    ),
  });
  const events: LabvirtEvent[] = [];
  stack.labvirt.events.onAny((e) => void events.push(e));
  const until = async <T>(
    fn: () => Promise<T | undefined | false>,
    what: string,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<T> => pollUntil(fn, timeoutMs, () => new Error(`timed out waiting for ${what}`));
  return {
    ...stack,
    dir,
    events,
    until,
    untilSession: (id, state, timeoutMs) =>
      until(
        async () => {
          const s = await stack.labvirt.service.status(id);
          if (s.state === 'ended' && state !== 'ended') {
            throw new Error(`session ${id} ended (${s.endedReason}) while waiting for ${state}`);
          }
          return s.state === state ? s : undefined;
        },
        `session ${id} to be ${state}`,
        timeoutMs,
      ),
    warmCount: async (flavor) => (await stack.labvirt.store.countByState(flavor)).warm ?? 0,
    fillPool: (flavor, atLeast, options) => fillPool(stack.labvirt, flavor, atLeast, options),
    async stop() {
      await stack.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
