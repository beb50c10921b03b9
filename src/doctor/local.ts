import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import { redactUrl } from '../redis/index.js';
import { fail, pass, warn, type CheckResult } from './types.js';

function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

function atLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

/** Redis reachable, ≥ 6.2, `noeviction` (BullMQ), and whether it persists anything. */
export async function checkRedis(config: Config, timeoutMs = 3_000): Promise<CheckResult[]> {
  const where = redactUrl(config.redis.url);
  const client = new Redis(config.redis.url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  // ioredis reports why a connection failed (ECONNREFUSED, ENOTFOUND, auth) as an event.
  let lastError: Error | undefined;
  client.on('error', (err: Error) => (lastError = err));
  try {
    try {
      await client.connect();
      await client.ping();
    } catch (err) {
      return [
        fail(
          'redis',
          'Redis reachable',
          `${where}: ${(lastError ?? (err as Error)).message}`,
          'start Redis >= 6.2 or point redis.url (or $LABVIRT_REDIS_URL) at it; with the Helm chart leave redis.url empty for the bundled one',
        ),
      ];
    }
    const server = await client.info('server');
    const version = infoField(server, 'redis_version') ?? 'unknown';
    const out: CheckResult[] = [
      atLeast(version, 6, 2)
        ? pass('redis', 'Redis reachable', `${where}, Redis ${version}`)
        : fail(
            'redis',
            'Redis reachable',
            `${where}, Redis ${version}`,
            'BullMQ needs Redis >= 6.2: upgrade it',
          ),
    ];
    let policy: string | undefined;
    try {
      const reply = (await client.config('GET', 'maxmemory-policy')) as string[];
      policy = reply[1];
    } catch {
      // Managed Redis often disables CONFIG; INFO has the policy too.
    }
    policy ??= infoField(await client.info('memory'), 'maxmemory_policy');
    out.push(
      policy === 'noeviction'
        ? pass('redis.eviction', 'Redis never evicts keys', 'maxmemory-policy noeviction')
        : policy === undefined
          ? warn(
              'redis.eviction',
              'Redis never evicts keys',
              'cannot read maxmemory-policy',
              'make sure maxmemory-policy is noeviction (BullMQ loses jobs otherwise)',
            )
          : fail(
              'redis.eviction',
              'Redis never evicts keys',
              `maxmemory-policy is ${policy}: Redis may drop queued jobs and indexes when full`,
              'set maxmemory-policy noeviction (redis.conf, or CONFIG SET maxmemory-policy noeviction)',
            ),
    );
    const persistence = await client.info('persistence');
    const aof = infoField(persistence, 'aof_enabled') === '1';
    let rdb = false;
    try {
      const save = (await client.config('GET', 'save')) as string[];
      rdb = (save[1] ?? '').trim() !== '';
    } catch {
      rdb = infoField(persistence, 'rdb_last_save_time') !== undefined && !aof;
    }
    out.push(
      aof || rdb
        ? pass(
            'redis.persistence',
            'Redis persistence',
            aof ? 'append-only file on' : 'RDB snapshots on',
          )
        : warn(
            'redis.persistence',
            'Redis persistence',
            'neither AOF nor RDB snapshots: a Redis restart loses the waiting line and queued jobs (labvirt rebuilds its indexes from the cluster)',
            "turn on appendonly yes (the Helm chart's bundled Redis does), or use a managed Redis with persistence",
          ),
    );
    return out;
  } finally {
    client.disconnect();
  }
}

/** The SSH gateway's listener can be opened (nothing else holds the port). */
export async function checkGatewayPort(config: Config): Promise<CheckResult> {
  const title = 'SSH gateway port free';
  if (config.ssh.mode !== 'gateway') {
    return pass('ssh.port', title, 'ssh.mode is nodeport: no gateway listener');
  }
  const { bindAddress: host, gatewayPort: port } = config.ssh;
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, resolve);
    });
    return pass('ssh.port', title, `${host}:${port} can be opened`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'in use (by a running labvirt, if doctor runs beside it, which is fine)'
        : code === 'EACCES'
          ? 'not permitted (ports below 1024 need privileges)'
          : (err as Error).message;
    const fix =
      'choose a free port above 1024 for ssh.gatewayPort (the Service maps port 22 to it), or stop what holds it';
    return code === 'EADDRINUSE'
      ? warn('ssh.port', title, `${host}:${port}: ${why}`, fix)
      : fail('ssh.port', title, `${host}:${port}: ${why}`, fix);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}
