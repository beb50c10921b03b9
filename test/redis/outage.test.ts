import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RedisReachability, isConnectionError, startRedisServer } from '../../src/redis/index.js';
import { capturingLogger, countOf, warningsIn } from '../helpers/log-lines.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const LOST = 'Redis is out of reach; every connection retries (further errors at debug level)';
const BACK = 'Redis is reachable again';

describe('Redis out of reach: one line an outage', () => {
  let stack: TestStack | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await stack?.stop();
    stack = undefined;
  });

  it('labvirt logs the outage once, prints nothing raw, and says when Redis is back', async () => {
    const { logger, lines } = capturingLogger();
    stack = await startTestStack({
      logger,
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 2 },
        },
      },
    });
    await stack.fillPool('v1.30-1node', 1, { timeoutMs: 90_000 });
    // BullMQ prints a queue's unheard errors with console.error: raw stack
    // traces beside the JSON lines, one per retry of each connection.
    const raw = vi.spyOn(console, 'error');

    const before = lines.length;
    await stack.redis.kill9();
    // Every connection retries several times a second: 10 s of outage used
    // to write 113 warning lines and 28 stack traces.
    await stack.until(
      async () => countOf(lines.slice(before), 'redis connection error') >= 20,
      'the connections to fail again and again',
      30_000,
    );
    const during = lines.slice(before);
    const warnings = warningsIn(during);
    expect(
      warnings.map((l) => l.msg),
      JSON.stringify(warnings),
    ).toEqual([LOST]);
    // The first error depends on the moment: a reset, a refusal, a closed connection.
    expect(warnings[0]!.err).toMatch(/ECONNREFUSED|ECONNRESET|Connection is closed/);
    expect(raw).not.toHaveBeenCalled();
    const registry = stack.labvirt.metrics.registry;
    expect(await registry.getSingleMetricAsString('labvirt_dependency_up')).toContain(
      'labvirt_dependency_up{dependency="redis"} 0',
    );

    await stack.redis.restart();
    await stack.until(async () => lines.some((l) => l.msg === BACK), 'Redis reachable again');
    const back = lines.find((l) => l.msg === BACK)!;
    expect(back.outageSeconds).toBeGreaterThan(0);
    expect(await registry.getSingleMetricAsString('labvirt_dependency_up')).toContain(
      'labvirt_dependency_up{dependency="redis"} 1',
    );
    expect(await registry.getSingleMetricAsString('labvirt_dependency_outages_total')).toContain(
      'labvirt_dependency_outages_total{dependency="redis"} 1',
    );
    // And labvirt works on: its commands reach the new server.
    await expect(stack.labvirt.service.poolStatus()).resolves.toMatchObject({
      flavors: expect.any(Array),
    });
    expect(raw).not.toHaveBeenCalled();
  }, 150_000);
});

describe('RedisReachability', () => {
  it('counts errors that are not about reaching Redis on their own, each logged', async () => {
    const { logger, lines } = capturingLogger();
    const reach = new RedisReachability(logger);
    const wrongType = new Error(
      'WRONGTYPE Operation against a key holding the wrong kind of value',
    );
    expect(isConnectionError(wrongType)).toBe(false);
    reach.error(wrongType, 'labvirt', 'error');
    reach.error(wrongType, 'labvirt', 'error');
    // A worker's own failure is named as the caller says.
    reach.error(new Error('Missing lock for job 7'), 'worker provision', 'error', 'worker error');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.level, l.msg, l.connection])).toEqual([
      [50, 'redis error', 'labvirt'],
      [50, 'redis error', 'labvirt'],
      [50, 'worker error', 'worker provision'],
    ]);
  });

  it('takes a minute without any connection error for the end of an outage no client reported', async () => {
    const { logger, lines } = capturingLogger('info');
    let t = 0;
    const reach = new RedisReachability(logger, () => t);
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
      code: 'ECONNREFUSED',
    });
    reach.error(refused, 'queue provision');
    t += 30_000;
    reach.error(refused, 'queue provision');
    t += 59_000;
    reach.error(refused, 'queue provision');
    t += 61_000;
    reach.error(refused, 'worker provision');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.msg, l.connection])).toEqual([
      [LOST, 'queue provision'],
      [LOST, 'worker provision'],
    ]);
  });

  it('ends an outage when a watched client is ready again, saying how long it lasted', async () => {
    const { logger, lines } = capturingLogger('info');
    let t = 0;
    const reach = new RedisReachability(logger, () => t);
    const server = await startRedisServer();
    try {
      // A port nothing listens on: the outage starts.
      const dead = reach.watch(
        new Redis({ port: 1, lazyConnect: true, retryStrategy: () => null }),
        'dead',
      );
      await dead.connect().catch(() => undefined);
      dead.disconnect();
      t += 4_200;
      const live = reach.watch(new Redis(server.url, { lazyConnect: true }), 'live');
      await live.connect();
      live.disconnect();
      expect(lines.map((l) => [l.msg, l.connection, l.outageSeconds])).toEqual([
        [LOST, 'dead', undefined],
        [BACK, 'live', 4.2],
      ]);
    } finally {
      await server.stop();
    }
  });
});
