import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restartSafePort } from '../../src/net/ports.js';
import { startRedisServer, type RedisServerHandle } from '../../src/redis/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { Store } from '../../src/store/index.js';
import { serveConfigFor } from '../helpers/stack.js';
import { cliEnv } from '../helpers/cli-env.js';

const ROOT = join(import.meta.dirname, '..', '..');
const TOKEN = 'redis-down-test-token-0123456789';
const GRACE_SECONDS = 2;

/**
 * Waits for `fn` to give a value. A refused or broken connection (fetch's
 * TypeError) while labvirt starts means not yet; any other error, such as
 * labvirt having exited, ends the wait at once with its reason.
 */
async function until<T>(fn: () => Promise<T | undefined | false>, what: string): Promise<T> {
  const deadline = Date.now() + 90_000;
  let last: unknown;
  for (;;) {
    const v = await fn().catch((err: unknown) => {
      if (!(err instanceof TypeError)) throw err;
      last = err;
      return undefined;
    });
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what} (last: ${(last as Error | undefined)?.message})`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('labvirt serve when Redis goes down', () => {
  let dir: string;
  let redis: RedisServerHandle;
  let sim: SimHandle;
  let child: ChildProcess | undefined;
  let output = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-redis-down-'));
    redis = await startRedisServer();
    sim = await startSim({ dir: join(dir, 'sim'), speed: 100 });
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await sim?.stop();
    await redis?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers /v1/pool with 503 quickly and stops within its grace period on SIGTERM', async () => {
    const apiPort = await restartSafePort();
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    const configFile = join(dir, 'labvirt.yaml');
    writeFileSync(
      configFile,
      stringify(
        serveConfigFor(sim, redis.url, {
          flavors: {
            'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 2, maxTotal: 4 },
            'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
          },
          pool: {
            pollSeconds: 0.05,
            jobLockSeconds: 2,
            shutdownGraceSeconds: GRACE_SECONDS,
            replenishCron: '*/1 * * * * *',
            reconcileCron: '*/2 * * * * *',
          },
          api: { port: apiPort },
          ssh: {
            gatewayPort: 0,
            bindAddress: '127.0.0.1',
            hostKey: join(dir, 'hk'),
            orchestratorKey: join(dir, 'ok'),
          },
        }),
      ),
    );
    const proc = spawn(
      process.execPath,
      [join(ROOT, 'bin', 'labvirt.js'), 'serve', '--config', configFile],
      {
        env: cliEnv({ LABVIRT_API_TOKEN: TOKEN }),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child = proc;
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((r) =>
      proc.once('exit', (code) => r({ code, at: Date.now() })),
    );
    const getPool = () =>
      fetch(`${apiUrl}/v1/pool`, {
        headers: { authorization: `Bearer ${TOKEN}` },
        signal: AbortSignal.timeout(30_000),
      });

    await until(async () => {
      if (proc.exitCode !== null) throw new Error(`labvirt exited: ${output.slice(-2000)}`);
      return (await getPool()).status === 200;
    }, 'the API answering');
    // Work in flight when Redis goes: envs being provisioned.
    const client = new Redis(redis.url);
    const store = new Store(client, 'labvirt');
    await until(async () => (await store.listEnvs({})).length > 0, 'an env being provisioned');
    client.disconnect();

    await redis.stop();
    const asked = Date.now();
    const res = await getPool();
    const answeredMs = Date.now() - asked;
    expect(res.status, output.slice(-2000)).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: 'UNAVAILABLE' } });
    // labvirt gives up on Redis after 3 s (src/api/routes/pool.ts); without
    // that the request would hang until the 30 s abort above. Generous for a
    // loaded machine, far from a hang.
    expect(answeredMs).toBeLessThan(15_000);

    const signalled = Date.now();
    proc.kill('SIGTERM');
    const { code, at } = await exited;
    child = undefined;
    expect(code, output.slice(-3000)).toBe(0);
    // The grace period, the 5 s margin labvirt allows a part that waits on
    // Redis, and start-up slack on a loaded machine (it took 35 s before).
    expect(at - signalled, output.slice(-3000)).toBeLessThan(GRACE_SECONDS * 1000 + 8000);
    // What it left behind is named: the queues' close waits on Redis for good.
    const leftBehind = [...output.matchAll(/"part":"([^"]+)","msg":"([^"]*did not stop[^"]*)"/g)];
    expect(
      leftBehind.map((m) => m[1]),
      output.slice(-3000),
    ).toContain('job queues');
    for (const [, part, msg] of leftBehind)
      expect(msg).toMatch(new RegExp(`^${part} did not stop`));
  }, 120_000);
});
