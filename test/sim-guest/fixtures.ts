import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import ssh2, { type Client, type ConnectConfig } from 'ssh2';

import { stringify } from 'yaml';
import { startGuest, type Guest, type GuestOptions } from '../../src/sim/guest/index.js';
import { HELPER_SOURCE } from '../../src/sim/guest/spawner.js';
import { generateKeyPair, type GuestResolver } from '../../src/ssh/index.js';

export interface KeyPair {
  private: string;
  public: string;
}

export const newKey = (): KeyPair => generateKeyPair();

export interface TestGuest {
  guest: Guest;
  sandbox: string;
  ip: string;
}

/** Tracks what a test started, so it can all be stopped in afterEach. */
export class GuestFarm {
  readonly guests = new Map<string, TestGuest>();
  private dirs: string[] = [];
  private nextIp = 10;

  /** Maps started guests' (ip, 22) to their loopback port, as the sim's resolver does. */
  readonly resolve: GuestResolver = (ip, port) => {
    const g = this.guests.get(ip);
    if (!g || port !== 22)
      throw Object.assign(new Error(`no guest at ${ip}:${port}`), { code: 'EGUESTUNKNOWN' });
    return { host: '127.0.0.1', port: g.guest.port };
  };

  async start(
    users: Record<string, string[]>,
    extra: Partial<GuestOptions> & { ip?: string } = {},
  ): Promise<TestGuest> {
    const sandbox = await mkdtemp(join(tmpdir(), 'labvirt-guest-'));
    this.dirs.push(sandbox);
    const ip = extra.ip ?? `10.244.0.${this.nextIp++}`;
    const userData =
      '#cloud-config\n' +
      stringify({
        users: Object.entries(users).map(([name, keys]) => ({ name, ssh_authorized_keys: keys })),
      });
    const guest = await startGuest({
      namespace: 'lab-test',
      vmiName: 'control-plane',
      ip,
      role: 'control-plane',
      userData,
      sandboxRoot: sandbox,
      bootstrapDelayMs: 0,
      resolvePeer: this.resolve,
      ...extra,
    });
    const g = { guest, sandbox, ip };
    this.guests.set(ip, g);
    return g;
  }

  async stopAll() {
    await Promise.all([...this.guests.values()].map((g) => g.guest.stop()));
    this.guests.clear();
    await Promise.all(this.dirs.map((d) => rm(d, { recursive: true, force: true })));
    this.dirs = [];
  }
}

export function connectClient(config: ConnectConfig): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({ host: '127.0.0.1', readyTimeout: 10_000, ...config });
  });
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal?: string;
}

export function run(
  client: Client,
  command: string,
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    client.exec(command, { env: opts.env }, (err, stream) => {
      if (err) return reject(err);
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      let signal: string | undefined;
      stream.on('data', (d: Buffer) => (stdout += d.toString()));
      stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      stream.on('exit', (c: number | null, s?: string) => {
        code = c;
        signal = s;
      });
      stream.on('close', () => resolve({ stdout, stderr, code, ...(signal ? { signal } : {}) }));
      stream.end(opts.stdin ?? '');
    });
  });
}

/**
 * Reads a stream until `pattern` shows up in what it printed, matched without
 * terminal control sequences (a shell in tmux puts cursor moves and erases
 * inside lines when it redraws); resolves with everything read, as it came.
 */
export function readUntil(stream: NodeJS.ReadableStream, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d: Buffer) => {
      seen += d.toString();
      if (pattern.test(stripVTControlCharacters(seen))) {
        stream.off('data', onData);
        resolve(seen);
      }
    };
    stream.on('data', onData);
    stream.once('close', () =>
      reject(new Error(`stream closed before ${pattern}; saw ${JSON.stringify(seen)}`)),
    );
  });
}

/**
 * The processes of a sandboxed guest, read from the host's /proc: the bwrap
 * that holds `root` as the guest's `/`, and everything under it. `helpers`
 * are the guest's helper processes (`node -e HELPER_SOURCE`, src/sim/guest/spawner.ts),
 * not a student's own `node -e`.
 */
export function guestProcesses(root: string): { all: number; helpers: number } {
  const procs = new Map<number, { ppid: number; argv: string[] }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name in parentheses may hold spaces: the fields after its last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      procs.set(Number(name), { ppid, argv });
    } catch {
      /* gone while read */
    }
  }
  const inGuest = new Set<number>();
  for (const [pid, p] of procs) {
    const at = p.argv.indexOf(root);
    if (p.argv[at - 1] === '--bind' && p.argv[at + 1] === '/' && !inGuest.has(p.ppid))
      inGuest.add(pid);
  }
  // Descendants, until none is added.
  for (let size = -1; size !== inGuest.size;) {
    size = inGuest.size;
    for (const [pid, p] of procs) if (inGuest.has(p.ppid)) inGuest.add(pid);
  }
  const helpers = [...inGuest].filter((pid) => {
    const argv = procs.get(pid)!.argv;
    return argv[1] === '-e' && argv[2] === HELPER_SOURCE;
  }).length;
  return { all: inGuest.size, helpers };
}
