import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  runUnderLease,
  startRedisServer,
  type LeasedRole,
  type RedisServerHandle,
} from '../../src/redis/index.js';
import { capturingLogger } from '../helpers/log-lines.js';

const TTL_MS = 600;
const KEY = 'labvirt:lease:test-role';

/**
 * A role that one replica at a time runs (src/redis/lease.ts), against a real
 * redis-server: several "replicas" in this process, each with a connection of
 * its own, as separate processes would have.
 */
describe('a role run under a lease in Redis', () => {
  let server: RedisServerHandle;
  const connections: Redis[] = [];
  const roles: LeasedRole[] = [];
  /** How many replicas run the role right now, and the most seen at once. */
  let runningNow = 0;
  let mostAtOnce = 0;
  const starts: string[] = [];

  const connect = () => {
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    connections.push(redis);
    return redis;
  };
  const replica = (name: string, redis = connect()) => {
    const { logger, lines } = capturingLogger('info');
    const role = runUnderLease({
      redis,
      key: KEY,
      holder: name,
      ttlMs: TTL_MS,
      role: 'test-role',
      log: logger,
      start: () => {
        starts.push(name);
        runningNow++;
        mostAtOnce = Math.max(mostAtOnce, runningNow);
        return { stop: () => void runningNow-- };
      },
    });
    roles.push(role);
    return { role, lines, redis };
  };
  /** Polls `fn` (every 20 ms: the handovers are timed) until it holds; the message says what was awaited. */
  const until = (what: string, fn: () => boolean | Promise<boolean>, timeout = 10_000) =>
    expect.poll(fn, { timeout, interval: 20, message: what }).toBe(true);

  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterEach(async () => {
    await Promise.all(roles.splice(0).map((r) => r.stop()));
    for (const c of connections.splice(0)) c.disconnect();
    const admin = new Redis(server.url);
    admin.on('error', () => undefined);
    await admin.del(KEY);
    admin.disconnect();
    runningNow = 0;
    mostAtOnce = 0;
    starts.length = 0;
  });
  afterAll(async () => {
    await server.stop();
  });

  it('runs in exactly one of three replicas, and in another one soon after that one stops', async () => {
    const a = replica('a');
    const b = replica('b');
    const c = replica('c');
    await Promise.all([a, b, c].map((r) => r.role.settled));
    expect([a, b, c].filter((r) => r.role.running)).toHaveLength(1);
    const first = [a, b, c].find((r) => r.role.running)!;
    // Several renewals: the holder keeps it, nobody else starts.
    await new Promise((r) => setTimeout(r, TTL_MS * 3));
    expect(starts).toHaveLength(1);
    expect(first.role.running).toBe(true);

    const handedAt = Date.now();
    await first.role.stop();
    expect(first.role.running).toBe(false);
    // Given back: the next ask of another replica (every third of the lease) takes it.
    await until('another replica to run the role', () =>
      [a, b, c].some((r) => r !== first && r.role.running),
    );
    expect(Date.now() - handedAt).toBeLessThan(TTL_MS);
    expect(starts).toHaveLength(2);
    expect(mostAtOnce).toBe(1);
  });

  it('is taken over when its holder stops renewing without giving it back (a crash)', async () => {
    const a = replica('a');
    await a.role.settled;
    expect(a.role.running).toBe(true);
    const b = replica('b');
    await b.role.settled;
    expect(b.role.running).toBe(false);
    // a's process is gone: its connection drops and it never asks again.
    const goneAt = Date.now();
    a.redis.disconnect();
    await until('b to take the lapsed lease', () => b.role.running);
    const took = Date.now() - goneAt;
    // Not before the lease lapsed, and within an ask after.
    expect(took).toBeGreaterThanOrEqual(TTL_MS - 50);
    expect(took).toBeLessThan(TTL_MS * 3);
  });

  it('stops the role where another replica holds the lease now', async () => {
    const a = replica('a');
    await a.role.settled;
    expect(a.role.running).toBe(true);
    // What a replica sees after losing the lease (e.g. it stalled past the lease): another name.
    const admin = connect();
    await admin.set(KEY, 'someone-else', 'PX', 60_000);
    await until('a to stop the role', () => !a.role.running);
    expect(runningNow).toBe(0);
  });

  it('after Redis restarts empty, exactly one replica runs it again', async () => {
    const a = replica('a');
    const b = replica('b');
    await Promise.all([a.role.settled, b.role.settled]);
    expect([a, b].filter((r) => r.role.running)).toHaveLength(1);
    await server.kill9();
    await server.restart();
    // Both reconnect; whoever asks first holds it, and the other one does not run.
    const admin = connect();
    await until(
      'the lease held again in Redis',
      async () => (await admin.get(KEY).catch(() => null)) !== null,
      20_000,
    );
    await new Promise((r) => setTimeout(r, TTL_MS));
    expect([a, b].filter((r) => r.role.running)).toHaveLength(1);
    expect(await admin.get(KEY)).toBe([a, b].find((r) => r.role.running) === a ? 'a' : 'b');
  });

  it('keeps the role while Redis is unreachable, says so once, and stops promptly', async () => {
    const a = replica('a');
    await a.role.settled;
    expect(a.role.running).toBe(true);
    await server.stop();
    try {
      await new Promise((r) => setTimeout(r, TTL_MS * 3));
      // Nobody can take it meanwhile: running on is what keeps the role served.
      expect(a.role.running).toBe(true);
      expect(
        a.lines.filter(
          (l) => l.msg === 'cannot reach Redis for the lease; keeping the role as it is',
        ),
      ).toHaveLength(1);
      const stopAt = Date.now();
      await a.role.stop();
      expect(a.role.running).toBe(false);
      expect(Date.now() - stopAt).toBeLessThan(3000);
    } finally {
      server = await startRedisServer();
    }
  });
});
