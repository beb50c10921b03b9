import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../../src/redis/index.js';

export interface RedisFixture {
  server: RedisServerHandle;
  client: Redis;
  url: string;
  /** A fresh connection (closed after the file's tests). */
  connect(): Redis;
}

/**
 * One real redis-server per test file on a free loopback port, flushed
 * before each test.
 */
export function useRedis(options: { flushBetweenTests?: boolean } = {}): RedisFixture {
  const clients: Redis[] = [];
  const fixture = {} as RedisFixture;
  beforeAll(async () => {
    fixture.server = await startRedisServer();
    fixture.url = fixture.server.url;
    fixture.connect = () => {
      const c = new Redis(fixture.server.url, { maxRetriesPerRequest: 3 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    };
    fixture.client = fixture.connect();
  });
  if (options.flushBetweenTests !== false) {
    beforeEach(async () => {
      await fixture.client.flushall();
    });
  }
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await fixture.server?.stop();
  });
  return fixture;
}
