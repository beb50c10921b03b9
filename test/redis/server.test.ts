import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
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

  it('goes when the process that started it is killed by a signal', async () => {
    // Its exit hook cannot run then; the server used to stay up on its port.
    const holder = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'hold-server.ts')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let pid = 0;
    try {
      pid = await new Promise<number>((resolve, reject) => {
        let out = '';
        holder.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(Number(out.trim()));
        });
        holder.once('exit', (code) => reject(new Error(`the holder exited (${code}): ${out}`)));
      });
      expect(pid).toBeGreaterThan(0);
      expect(alive(pid)).toBe(true);
      holder.kill('SIGKILL');
      await expect.poll(() => alive(pid), { timeout: 10_000 }).toBe(false);
    } finally {
      holder.kill('SIGKILL');
      // A server that outlived it (the failure) is not left to the machine.
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }, 60_000);

  it('refuses with a clear message when no binary exists and it may not install', async () => {
    const env = { PATH: '/nonexistent', LABVIRT_REDIS_SERVER: '/nonexistent/redis-server' };
    expect(findRedisServer({ env })).toBeUndefined();
    const err = await ensureRedisServer({ env, allowInstall: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisServerMissingError);
    expect((err as Error).message).toMatch(/apt-get install redis-server/);
  });
});

/** Whether a process with this pid exists (and is not a zombie waiting for its parent). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
