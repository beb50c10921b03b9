import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Redis } from 'ioredis';
import { installWithApt, isExecutable } from '../host-packages/index.js';
import { freePort, restartSafePortRange } from '../net/ports.js';
import type { RedisReachability } from './reachability.js';

export { RedisReachability, isConnectionError } from './reachability.js';

/** A Redis URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * labvirt's own Redis connection: connected before it is handed out, so a
 * Redis that cannot be reached fails start-up with a clear message (password
 * hidden) instead of commands queueing forever; later errors go to the
 * process's account of Redis's reachability (one line an outage).
 */
export async function connectRedis(url: string, reachability: RedisReachability): Promise<Redis> {
  const redis = reachability.watch(new Redis(url, { lazyConnect: true }), 'labvirt');
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${(err as Error).message}`);
  }
  return redis;
}

export class RedisServerMissingError extends Error {
  constructor(detail: string) {
    super(
      `redis-server is not installed and labvirt cannot install it here (${detail}). ` +
        'Install it with your package manager (Debian/Ubuntu: `sudo apt-get install redis-server`) ' +
        'or set $LABVIRT_REDIS_SERVER to its path.',
    );
    this.name = 'RedisServerMissingError';
  }
}

export interface FindOptions {
  env?: NodeJS.ProcessEnv;
}

/** Path of a redis-server binary: $LABVIRT_REDIS_SERVER, then $PATH, then the usual places. */
export function findRedisServer(options: FindOptions = {}): string | undefined {
  const env = options.env ?? process.env;
  if (env.LABVIRT_REDIS_SERVER) {
    return isExecutable(env.LABVIRT_REDIS_SERVER) ? env.LABVIRT_REDIS_SERVER : undefined;
  }
  const dirs = [
    ...(env.PATH ?? '').split(delimiter).filter(Boolean),
    '/usr/bin',
    '/usr/local/bin',
    '/usr/sbin',
  ];
  for (const dir of dirs) {
    const candidate = join(dir, 'redis-server');
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export interface EnsureOptions extends FindOptions {
  /** Allow installing with apt-get when missing (default: when running as root). */
  allowInstall?: boolean;
  log?: (line: string) => void;
}

/**
 * Finds redis-server, installing it with apt-get when it is missing and this
 * process may (root on a Debian-family system). Refuses clearly otherwise.
 */
export async function ensureRedisServer(options: EnsureOptions = {}): Promise<string> {
  const found = findRedisServer(options);
  if (found) return found;
  const failed = installWithApt('redis-server', options);
  if (failed) throw new RedisServerMissingError(failed);
  const installed = findRedisServer(options);
  if (!installed)
    throw new RedisServerMissingError('apt-get finished but redis-server is still missing');
  return installed;
}

export interface RedisServerOptions {
  /** 0 or absent: a free port. */
  port?: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /**
   * Where to look for a free port when `port` is absent. Default: outside
   * the kernel's ephemeral range, so that `restart()` finds its port still
   * free (no outgoing connection took it while the server was down).
   */
  ports?: { from: number; to: number };
  /** Working directory (created, and kept); a fresh temp dir when absent, removed by stop(). */
  dir?: string;
  /** Keep data across restarts (AOF). Off by default: tests want a clean slate. */
  persistence?: boolean;
  binary?: string;
}

export interface RedisServerHandle {
  readonly url: string;
  readonly port: number;
  readonly pid: number | undefined;
  /** Its working directory. */
  readonly dir: string;
  /** Graceful stop (SHUTDOWN NOSAVE); a temp dir it made is removed. */
  stop(): Promise<void>;
  /** SIGKILL, for crash tests. */
  kill9(): Promise<void>;
  /** Start again on the same port (empty unless persistence is on). */
  restart(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

let pdeathsigWrapper: string[] | undefined;
/**
 * `setpriv --pdeathsig KILL` (util-linux, on every Debian and Ubuntu) when it
 * works here: it execs redis-server in place (same pid) with the kernel told
 * to kill it when the process that started it dies. The exit hook above
 * cannot run when that process is killed by a signal (SIGKILL, a test
 * runner's timeout, `kill -9` of `labvirt dev`), and the server was left
 * running on its port.
 */
function parentDeathWrapper(): string[] {
  if (pdeathsigWrapper) return pdeathsigWrapper;
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => isExecutable(p));
  const works =
    setpriv !== undefined &&
    spawnSync(setpriv, ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  pdeathsigWrapper = works ? [setpriv, '--pdeathsig', 'KILL', '--'] : [];
  return pdeathsigWrapper;
}

/** Starts a private redis-server on 127.0.0.1 (never another interface), waiting until it answers. */
export async function startRedisServer(
  options: RedisServerOptions = {},
): Promise<RedisServerHandle> {
  const binary = options.binary ?? (await ensureRedisServer());
  const host = options.host ?? '127.0.0.1';
  const port =
    options.port && options.port > 0
      ? options.port
      : await freePort(host, options.ports ?? restartSafePortRange());
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'labvirt-redis-'));
  // A temp dir of its own goes with the server: tests start hundreds.
  const removeOwnDir = () => {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  mkdirSync(dir, { recursive: true });
  installExitHook();
  let child: ChildProcess | undefined;

  const launch = async () => {
    const args = [
      '--port',
      String(port),
      '--bind',
      host,
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      options.persistence ? 'yes' : 'no',
      '--maxmemory-policy',
      'noeviction',
      '--daemonize',
      'no',
      '--protected-mode',
      'yes',
      '--loglevel',
      'warning',
    ];
    const [command, ...rest] = [...parentDeathWrapper(), binary, ...args];
    // A process group of its own: a terminal's Ctrl-C (or `timeout`) signals
    // the whole foreground group, and a Redis stopped at the same moment as
    // labvirt left labvirt's shutdown talking to nothing. Its starter stops
    // it, last; the wrapper above and the exit hook cover a starter that dies.
    const proc = spawn(command!, rest, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    running.add(proc);
    proc.on('exit', () => running.delete(proc));
    child = proc;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited: ${stderr.slice(-500)}`);
      const client = new Redis({
        host,
        port,
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        if ((await client.ping()) === 'PONG') {
          client.disconnect();
          return;
        }
      } catch {
        client.disconnect();
      }
      if (Date.now() > deadline)
        throw new Error(`redis-server did not answer on port ${port}: ${stderr.slice(-500)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const waitExit = (proc: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
    });

  try {
    await launch();
  } catch (err) {
    child?.kill('SIGKILL');
    removeOwnDir();
    throw err;
  }
  return {
    url: `redis://${host}:${port}`,
    port,
    dir,
    get pid() {
      return child?.pid;
    },
    async stop() {
      const proc = child;
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await waitExit(proc);
      }
      removeOwnDir();
    },
    async kill9() {
      const proc = child;
      if (!proc || proc.exitCode !== null) return;
      proc.kill('SIGKILL');
      await waitExit(proc);
    },
    async restart() {
      const proc = child;
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await waitExit(proc);
      }
      await launch();
    },
  };
}
export { runUnderLease, type LeasedRole, type LeasedRoleOptions } from './lease.js';
