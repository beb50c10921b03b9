import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLabvirt, type LabvirtHandle } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { startRedisServer, type RedisServerHandle } from '../../src/redis/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { capturingLogger, type LogLine } from '../helpers/log-lines.js';
import { serveConfigFor } from '../helpers/stack.js';

const API_TOKEN = 'sync-replicas-test-token-01234';
const LEASE_SECONDS = 1.5;
const TOOK = 'this replica took the lease and runs the role';

/**
 * Every replica runs the `sync` role, but only one at a time runs the
 * NodePort sync itself (each would hold a relay and a watch per active env):
 * the replicas share a lease in Redis, and another one takes over when the
 * one running it stops.
 */
describe('the NodePort sync across replicas', () => {
  let dir: string;
  let redis: RedisServerHandle;
  let sim: SimHandle;
  let configFile: string;
  const replicas: { handle: LabvirtHandle; lines: LogLine[] }[] = [];

  const replica = async () => {
    const { logger, lines } = capturingLogger('info');
    const handle = await startLabvirt({
      config: loadConfig({ file: configFile, env: {} }),
      logger,
      apiToken: API_TOKEN,
      resolver: sim.resolveGuest,
      roles: { api: false, gateway: false, scheduler: false, workers: false, sync: true },
    });
    const r = { handle, lines };
    replicas.push(r);
    return r;
  };
  const runsSync = (r: { lines: LogLine[] }) =>
    r.lines.filter((l) => l.msg === TOOK && l.role === 'nodeport-sync').length;
  /** `labvirt_lease_held{role="nodeport-sync"}` as the replica's /metrics shows it. */
  const leaseHeld = async (handle: LabvirtHandle): Promise<number> => {
    const text = await handle.metrics.registry.getSingleMetricAsString('labvirt_lease_held');
    const m = /^labvirt_lease_held\{role="nodeport-sync"\} (\d+)$/m.exec(text);
    return Number(m?.[1] ?? NaN);
  };
  const until = (what: string, fn: () => boolean, timeout = 20_000) =>
    expect.poll(fn, { timeout, message: what }).toBe(true);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-sync-replicas-'));
    redis = await startRedisServer();
    sim = await startSim({ dir: join(dir, 'sim'), speed: 200 });
    configFile = join(dir, 'labvirt.yaml');
    writeFileSync(
      configFile,
      stringify(
        serveConfigFor(sim, redis.url, {
          // The fixture labs name both flavors; no env is made.
          flavors: {
            'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 0, maxTotal: 1 },
            'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
          },
          api: { host: '127.0.0.1', port: 0 },
          ssh: {
            gatewayPort: 0,
            bindAddress: '127.0.0.1',
            hostKey: join(dir, 'hk'),
            orchestratorKey: join(dir, 'ok'),
          },
          sync: { leaseSeconds: LEASE_SECONDS },
        }),
      ),
    );
  }, 60_000);
  afterAll(async () => {
    for (const r of replicas.splice(0)) await r.handle.stop();
    await sim?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('runs in one replica of three, and in another within a third of the lease once it stops', async () => {
    const all = [await replica(), await replica(), await replica()];
    await until('one replica to run the sync', () => all.some((r) => runsSync(r) > 0));
    // Several renewals later still one, the same.
    await new Promise((r) => setTimeout(r, LEASE_SECONDS * 2000));
    const running = all.filter((r) => runsSync(r) > 0);
    expect(running).toHaveLength(1);
    expect(runsSync(running[0]!)).toBe(1);

    const stoppedAt = Date.now();
    await running[0]!.handle.stop();
    replicas.splice(replicas.indexOf(running[0]!), 1);
    const rest = all.filter((r) => r !== running[0]);
    await until('another replica to run the sync', () => rest.some((r) => runsSync(r) > 0));
    // Given back at stop: taken at the next ask, not after the lease lapsed.
    expect(Date.now() - stoppedAt).toBeLessThan(LEASE_SECONDS * 1000);
    expect(rest.filter((r) => runsSync(r) > 0)).toHaveLength(1);
    // What an operator's dashboard reads: 1 in the replica that runs it, 0 in the other.
    const held = await Promise.all(rest.map((r) => leaseHeld(r.handle)));
    expect(held[rest.findIndex((r) => runsSync(r) > 0)]).toBe(1);
    expect(held[rest.findIndex((r) => runsSync(r) === 0)]).toBe(0);
  });
});
