/**
 * How long an SSH connection and a command take in wall time, with and
 * without TCP_NODELAY on either end (run: `npx tsx bench/ssh-latency.bench.ts`).
 *
 * ssh2 writes every SSH message with a write of its own. With Nagle's
 * algorithm on, a small write that follows another before the peer
 * acknowledged the first waits for that acknowledgement, and a peer with
 * nothing to send delays it (Linux: up to 40 ms). labvirt's executor now
 * turns Nagle off on its connections to guests, and so do the simulator's
 * guests (src/ssh/executor.ts, src/sim/guest/server.ts); this bench shows
 * what each end's setting is worth, alternating the client's setting in
 * rounds so a change in the machine's load falls on both:
 * - against an ssh2 server in a child process, with Nagle off (as the
 *   simulator's guests now run) and on (as they ran before);
 * - against OpenSSH's sshd (what a real VM runs), when `/usr/sbin/sshd` is
 *   on this machine, started on a free loopback port with keys of its own.
 * Each connection runs one command that reads a 10 KiB bundle on stdin, as
 * the executor's commands do. BENCH_CONNECTIONS (default 40) connections per
 * server and client setting.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import ssh2, { type Client as ClientType, type PublicKeyAuthMethod } from 'ssh2';
import { guestAlgorithms } from '../src/ssh/algorithms.js';
import { preparedSigningKey } from '../src/ssh/key-objects.js';
import { generateKeyPair } from '../src/ssh/index.js';
import { freePort, pct, result, stopChild, waitFor } from './lib.js';
import { serveSshStub } from './ssh-stub.js';

const { Client, utils } = ssh2;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 40);
const BUNDLE = Buffer.alloc(10_240, 1);
const SSHD = '/usr/sbin/sshd';
const OPENSSH = "OpenSSH's sshd (a real VM's)";

if (process.argv[2] === '--server') {
  serveSshStub({ noDelay: process.argv[3] === 'nodelay' });
} else {
  await main();
}

interface Target {
  name: string;
  port: number;
  hostKey: string;
  username: string;
  clientKey: string;
  stop: () => Promise<void>;
}

async function ssh2Server(noDelay: boolean, clientKey: string): Promise<Target> {
  const child = fork(process.argv[1]!, ['--server', noDelay ? 'nodelay' : 'nagle'], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port, hostKey } = await new Promise<{ port: number; hostKey: string }>((resolve) =>
    child.once('message', (m) => resolve(m as { port: number; hostKey: string })),
  );
  return {
    name: `ssh2 server, Nagle ${noDelay ? 'off (the simulator now)' : 'on (the simulator before)'}`,
    port,
    hostKey,
    username: 'labvirt',
    clientKey,
    stop: () => stopChild(child, 5000),
  };
}

/** OpenSSH's sshd on a free loopback port, for this user only, with keys made here. */
async function openSshServer(clientKey: string, clientPublic: string): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-sshd-'));
  const host = generateKeyPair();
  writeFileSync(join(dir, 'host_key'), host.private, { mode: 0o600 });
  writeFileSync(join(dir, 'authorized_keys'), `${clientPublic}\n`, { mode: 0o600 });
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      `PidFile ${join(dir, 'sshd.pid')}`,
      'MaxStartups 100',
    ].join('\n') + '\n',
  );
  // Run as root, sshd wants its privilege separation directory.
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`sshd exited: ${err}`);
        return err.includes('Server listening');
      },
      10_000,
      'sshd to listen',
    );
  } catch (e) {
    await stopChild(child, 2000);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    name: OPENSSH,
    port,
    hostKey: host.public,
    username: userInfo().username,
    clientKey,
    stop: async () => {
      await stopChild(child, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Login {
  expected: Buffer;
  auth: PublicKeyAuthMethod;
}

/** The host key to expect and the login key, parsed once per target (as the executor keeps them), not inside a timing. */
function loginFor(target: Target): Login {
  return {
    expected: (utils.parseKey(target.hostKey) as ssh2.ParsedKey).getPublicSSH(),
    auth: {
      type: 'publickey',
      username: target.username,
      key: preparedSigningKey(target.clientKey, 'the bench key'),
    },
  };
}

function connect(target: Target, { expected, auth }: Login, noDelay: boolean): Promise<ClientType> {
  return new Promise<ClientType>((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({
      host: '127.0.0.1',
      port: target.port,
      username: target.username,
      authHandler: [auth],
      algorithms: guestAlgorithms(target.hostKey),
      hostVerifier: (key: Buffer) => key.equals(expected),
    });
    if (noDelay) c.setNoDelay(true);
  });
}

/** Reads the bundle, as the executor's commands do (`true` exited before it arrived). */
function command(c: ClientType): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    c.exec('cat >/dev/null', (err, stream) => {
      if (err) return reject(err);
      stream.on('data', () => undefined);
      stream.stderr.on('data', () => undefined);
      stream.on('close', () => resolve());
      stream.end(BUNDLE);
    }),
  );
}

async function measure(target: Target): Promise<void> {
  const sample = () => ({ connect: [] as number[], command: [] as number[] });
  const all = { nodelay: sample(), nagle: sample() };
  const login = loginFor(target);
  // Warm-up: the first connection pays for loading and compiling ssh2's code.
  (await connect(target, login, true)).end();
  const ROUNDS = Math.max(1, Math.min(10, CONNECTIONS));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? (['nagle', 'nodelay'] as const) : (['nodelay', 'nagle'] as const);
    for (const way of order) {
      for (let i = 0; i < Math.ceil(CONNECTIONS / ROUNDS); i++) {
        const t0 = performance.now();
        const c = await connect(target, login, way === 'nodelay');
        const t1 = performance.now();
        await command(c);
        const t2 = performance.now();
        c.end();
        all[way].connect.push(t1 - t0);
        all[way].command.push(t2 - t1);
      }
    }
  }
  const fmt = (v: number[]) => `p50 ${pct(v, 50).toFixed(1)} ms, p95 ${pct(v, 95).toFixed(1)} ms`;
  const ratio = (key: 'connect' | 'command') =>
    (pct(all.nodelay[key], 50) / pct(all.nagle[key], 50)).toFixed(2);
  console.log(
    `ssh latency, ${target.name}: connect → ready with the client's Nagle off ${fmt(all.nodelay.connect)}, on ${fmt(all.nagle.connect)} (÷ ${ratio('connect')}); a command on the open connection off ${fmt(all.nodelay.command)}, on ${fmt(all.nagle.command)} (÷ ${ratio('command')}); ${all.nodelay.connect.length} each, alternating`,
  );
  result({
    what: `SSH connect → ready + one command, ${target.name}, executor's client with Nagle off ÷ on (p50)`,
    figure: `${(pct(all.nodelay.connect, 50) + pct(all.nodelay.command, 50)).toFixed(1)} ms ÷ ${(pct(all.nagle.connect, 50) + pct(all.nagle.command, 50)).toFixed(1)} ms`,
  });
}

async function main(): Promise<void> {
  const clientPair = generateKeyPair();
  const targets: (() => Promise<Target>)[] = [
    () => ssh2Server(true, clientPair.private),
    () => ssh2Server(false, clientPair.private),
  ];
  if (existsSync(SSHD)) targets.push(() => openSshServer(clientPair.private, clientPair.public));
  else
    console.log(
      `ssh latency: ${SSHD} not found, OpenSSH's sshd left out (apt-get install openssh-server)`,
    );
  for (const start of targets) {
    let target: Target;
    try {
      target = await start();
    } catch (err) {
      // A machine whose sshd cannot run here (no privilege separation user,
      // a policy) still gets the other figures.
      console.log(`ssh latency: a server could not start, left out: ${(err as Error).message}`);
      continue;
    }
    try {
      await measure(target);
    } catch (err) {
      // Only the system's sshd may fail for reasons of this machine (a user
      // whose shell refuses commands); the ssh2 figures are the bench's own.
      if (target.name !== OPENSSH) throw err;
      console.log(`ssh latency: ${OPENSSH} left out: ${(err as Error).message}`);
    } finally {
      await target.stop();
    }
  }
  process.exit(0);
}
