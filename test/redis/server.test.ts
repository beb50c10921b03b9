import { existsSync } from 'node:fs';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  RedisServerMissingError,
  ensureRedisServer,
  findRedisServer,
  startRedisServer,
} from '../../src/redis/index.js';
import { ephemeralPortRange, restartSafePortRange } from '../../src/net/ports.js';

describe('redis-server helper', () => {
  it('starts a private server on loopback, survives kill -9 by restarting empty', async () => {
    const server = await startRedisServer();
    expect(server.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    // Outside the kernel's ephemeral ports: nothing else takes it while it is down.
    const ephemeral = ephemeralPortRange();
    if (ephemeral && restartSafePortRange(ephemeral)) {
      expect(server.port < ephemeral.from || server.port > ephemeral.to).toBe(true);
    }
    const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    await client.set('k', 'v');
    expect(await client.config('GET', 'maxmemory-policy')).toEqual([
      'maxmemory-policy',
      'noeviction',
    ]);
    await server.kill9();
    await expect(client.get('k')).rejects.toThrow();
    await server.restart();
    const again = new Redis(server.url);
    expect(await again.get('k')).toBeNull();
    again.disconnect();
    client.disconnect();
    expect(existsSync(server.dir)).toBe(true);
    await server.stop();
    // Its own temp dir goes with it (hundreds of test servers left empty ones behind).
    expect(existsSync(server.dir)).toBe(false);
    await server.stop();
  });

  it('refuses with a clear message when no binary exists and it may not install', async () => {
    const env = { PATH: '/nonexistent', LABVIRT_REDIS_SERVER: '/nonexistent/redis-server' };
    expect(findRedisServer({ env })).toBeUndefined();
    const err = await ensureRedisServer({ env, allowInstall: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisServerMissingError);
    expect((err as Error).message).toMatch(/apt-get install redis-server/);
  });
});
