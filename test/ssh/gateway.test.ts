import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import type { Client, ClientChannel, ConnectConfig, SFTPWrapper } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createExecutor,
  GatewayRefusal,
  loadOrCreateHostKey,
  NOTICES_SUBSYSTEM,
  startGateway,
  type Gateway,
  type GatewayOptions,
  type GatewaySession,
  type KeyStore,
  type LocalChannel,
  type LocalSession,
} from '../../src/ssh/index.js';
import {
  GuestFarm,
  connectClient,
  newKey,
  readUntil,
  run,
  type TestGuest,
} from '../sim-guest/fixtures.js';

const farm = new GuestFarm();
const labvirtKey = newKey();
/** The gateway's own key for its hop (ssh.gatewayClientKey). */
const gatewayClientKey = newKey();
const studentKey = newKey();
const gatewayKey = newKey();
const SESSION = 's-abc1234567';
let cp: TestGuest;
let worker: TestGuest;
let otherEnvNode: TestGuest;
let auditLines: Record<string, unknown>[] = [];
let sessions: Map<string, GatewaySession>;
const gateways: Gateway[] = [];
const clients: Client[] = [];
let workdir: string;

const audit = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        auditLines.push(JSON.parse(line));
      cb();
    },
  }),
);

beforeAll(async () => {
  workdir = await mkdtemp(join(tmpdir(), 'labvirt-gw-test-'));
  cp = await farm.start({ labvirt: [labvirtKey.public], student: [] });
  worker = await farm.start(
    { labvirt: [labvirtKey.public], student: [] },
    { hostname: 'worker-1' },
  );
  otherEnvNode = await farm.start({ labvirt: [labvirtKey.public], student: [] });
  // What labvirt does at claim: the student's key (and its own, for the gateway) into student's authorized_keys.
  const ex = createExecutor({
    privateKey: labvirtKey.private,
    gatewayPublicKey: gatewayClientKey.public,
    resolve: farm.resolve,
  });
  for (const [ip, node] of [
    [cp.ip, 'control-plane'],
    [worker.ip, 'worker-1'],
  ] as const) {
    await ex.installStudentKey({ envId: 'envaaaaa', node, ip }, studentKey.public);
  }
  await ex.close();
});
afterAll(async () => {
  await farm.stopAll();
  await rm(workdir, { recursive: true, force: true });
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.end();
  for (const g of gateways.splice(0)) {
    await g.close();
    await until(() => g.connections === 0);
  }
  auditLines = [];
});

async function until(cond: () => boolean) {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

function session(extra: Partial<GatewaySession> = {}): GatewaySession {
  return {
    sessionId: SESSION,
    student: 'ada',
    envId: 'envaaaaa',
    expiresAt: new Date(Date.now() + 3600_000),
    publicKeys: [studentKey.public],
    nodes: [
      { node: 'control-plane', ip: cp.ip },
      { node: 'worker-1', ip: worker.ip },
    ],
    ...extra,
  };
}

async function gateway(extra: Partial<GatewayOptions> = {}, s: GatewaySession[] = [session()]) {
  sessions = new Map(s.map((x) => [x.sessionId, x]));
  const gw = await startGateway({
    hostKey: gatewayKey.private,
    host: '127.0.0.1',
    port: 0,
    directory: { lookup: async (id) => sessions.get(id) },
    clientKey: gatewayClientKey.private,
    resolve: farm.resolve,
    idleTimeoutMs: 60_000,
    audit,
    ...extra,
  });
  gateways.push(gw);
  return gw;
}

/**
 * A gateway on a clock the test moves (`at`), its one session ending
 * `endsInMs` from now on that clock: what a test says about warnings and
 * cuts then does not depend on how long a login takes on a loaded machine.
 */
async function clockedGateway(
  rules: Pick<GatewayOptions, 'warnBeforeMs' | 'idleTimeoutMs' | 'recheckMs'>,
  endsInMs: number,
) {
  let clock = Date.now();
  const expiresAt = clock + endsInMs;
  const gw = await gateway({ now: () => clock, ...rules }, [
    session({ expiresAt: new Date(expiresAt) }),
  ]);
  return { gw, expiresAt, at: (t: number) => void (clock = t) };
}

async function studentLogin(gw: Gateway, extra: Partial<ConnectConfig> = {}) {
  const c = await connectClient({
    port: gw.port,
    username: SESSION,
    privateKey: studentKey.private,
    ...extra,
  });
  clients.push(c);
  return c;
}

/** Logs in expecting a refusal; returns what the gateway told the client. */
async function refusedLogin(gw: Gateway, username: string, privateKey: string): Promise<string> {
  const { default: ssh2 } = await import('ssh2');
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    let told = '';
    c.on('keyboard-interactive', (_name, instructions, _lang, _prompts, finish) => {
      told += instructions;
      finish(['']);
    });
    c.once('ready', () => reject(new Error('login unexpectedly accepted')));
    c.once('error', (err) => (/authentication/i.test(err.message) ? resolve(told) : reject(err)));
    c.connect({ host: '127.0.0.1', port: gw.port, username, privateKey, tryKeyboard: true });
  });
}

function shell(c: Client): Promise<ClientChannel> {
  return new Promise((res, rej) =>
    c.shell({ term: 'xterm', rows: 24, cols: 80 }, (err, s) => (err ? rej(err) : res(s))),
  );
}

const forward = (c: Client, host: string, port: number) =>
  new Promise<ClientChannel>((res, rej) =>
    c.forwardOut('127.0.0.1', 40000, host, port, (err, s) => (err ? rej(err) : res(s))),
  );

describe('ssh gateway', () => {
  it('gives the student an interactive shell on their control plane', async () => {
    const gw = await gateway();
    const c = await studentLogin(gw);
    const sh = await shell(c);
    sh.write('echo "I am $USER on $(hostname)" sum=$((2+3))\n');
    const seen = await readUntil(sh, /sum=5/);
    expect(seen).toContain('I am student on control-plane');
    const closed = new Promise((r) => sh.on('close', r));
    sh.write('exit\n');
    await closed;
  });

  it('runs exec commands verbatim and forwards exit codes; audits without keys', async () => {
    const gw = await gateway();
    const c = await studentLogin(gw);
    const r = await run(c, 'echo hi; echo err >&2; exit 4');
    expect(r).toMatchObject({ stdout: 'hi\n', stderr: 'err\n', code: 4 });
    c.end();
    await until(() => auditLines.some((l) => l.audit === 'ssh.connection.close'));
    const open = auditLines.find((l) => l.audit === 'ssh.connection.open');
    const close = auditLines.find((l) => l.audit === 'ssh.connection.close');
    expect(open).toMatchObject({ student: 'ada', sessionId: SESSION, envId: 'envaaaaa' });
    expect(close, JSON.stringify(close)).toMatchObject({
      student: 'ada',
      channels: { session: 1, exec: 1 },
    });
    expect(close?.bytesOut).toBeGreaterThan(0);
    expect(String(close?.source)).toMatch(/^127\.0\.0\.1:\d+$/);
    const all = JSON.stringify(auditLines);
    for (const secret of [
      studentKey.public.split(' ')[1],
      labvirtKey.private,
      gatewayKey.private,
    ]) {
      expect(all).not.toContain(secret);
    }
  });

  it('passes sftp through', async () => {
    const gw = await gateway();
    const c = await studentLogin(gw);
    const sftp = await new Promise<SFTPWrapper>((res, rej) =>
      c.sftp((e, s) => (e ? rej(e) : res(s))),
    );
    const data = Buffer.alloc(300_000, 7);
    await new Promise<void>((res, rej) =>
      sftp.writeFile('upload.bin', data, (e) => (e ? rej(e) : res())),
    );
    expect((await readFile(join(cp.sandbox, 'home/student/upload.bin'))).equals(data)).toBe(true);
    const back = await new Promise<Buffer>((res, rej) =>
      sftp.readFile('upload.bin', (e, b) => (e ? rej(e) : res(b))),
    );
    expect(back.equals(data)).toBe(true);
  });

  it('works with OpenSSH: scp in both protocols and ssh -J to a worker', async () => {
    const gw = await gateway();
    const keyFile = join(workdir, 'id_student');
    await writeFile(keyFile, studentKey.private, { mode: 0o600 });
    const src = join(workdir, 'hello.txt');
    await writeFile(src, 'hello over scp\n');
    const common = [
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'LogLevel=ERROR',
      '-i',
      keyFile,
    ];
    await promisify(execFile)('scp', [
      '-O',
      ...common,
      '-P',
      String(gw.port),
      src,
      `${SESSION}@127.0.0.1:copied.txt`,
    ]);
    expect(await readFile(join(cp.sandbox, 'home/student/copied.txt'), 'utf8')).toBe(
      'hello over scp\n',
    );
    // Modern scp speaks SFTP through the subsystem.
    const back = join(workdir, 'back.txt');
    await promisify(execFile)('scp', [
      ...common,
      '-P',
      String(gw.port),
      `${SESSION}@127.0.0.1:copied.txt`,
      back,
    ]);
    expect(await readFile(back, 'utf8')).toBe('hello over scp\n');
    const { stdout } = await promisify(execFile)('ssh', [
      ...common,
      '-o',
      `ProxyCommand=ssh ${common.join(' ')} -p ${gw.port} -W %h:%p ${SESSION}@127.0.0.1`,
      'student@worker-1',
      'echo "$USER@$(hostname)"',
    ]);
    expect(stdout).toBe('student@worker-1\n');
  });

  it('jumps to a worker by name or IP, end to end with the student key', async () => {
    const gw = await gateway();
    const c = await studentLogin(gw);
    for (const host of ['worker-1', worker.ip]) {
      const sock = await forward(c, host, 22);
      const inner = await connectClient({
        sock,
        username: 'student',
        privateKey: studentKey.private,
      });
      clients.push(inner);
      expect((await run(inner, 'hostname')).stdout).toBe('worker-1\n');
      inner.end();
    }
  });

  it('refuses jumps outside the env and to other ports', async () => {
    const gw = await gateway();
    const c = await studentLogin(gw);
    await expect(forward(c, otherEnvNode.ip, 22)).rejects.toThrow(/Channel open failure/i);
    await expect(forward(c, '127.0.0.1', 22)).rejects.toThrow(/Channel open failure/i);
    await expect(forward(c, 'worker-1', 6443)).rejects.toThrow(/Channel open failure/i);
    await expect(forward(c, 'worker-2', 22)).rejects.toThrow(/Channel open failure/i);
    expect(auditLines.filter((l) => l.audit === 'ssh.jump.refused')).toHaveLength(4);
  });

  it('refuses wrong keys, unknown and expired sessions with a message', async () => {
    const gw = await gateway({}, [
      session(),
      session({ sessionId: 's-expired000', expiresAt: new Date(Date.now() - 1000) }),
    ]);
    expect(await refusedLogin(gw, SESSION, newKey().private)).toMatch(
      /not the one for session s-abc1234567/,
    );
    expect(await refusedLogin(gw, 's-nosuchthin', studentKey.private)).toMatch(
      /no active lab session named s-nosuchthin/,
    );
    expect(await refusedLogin(gw, 's-expired000', studentKey.private)).toMatch(
      /session s-expired000 ended at/,
    );
    expect(await refusedLogin(gw, 'bad name;rm', studentKey.private)).toMatch(
      /log in as your session id/,
    );
    await until(() => gw.connections === 0);
  });

  it('warns, then disconnects an idle student', async () => {
    // Room for the shell to reach the guest on a loaded machine before the warning is due.
    const gw = await gateway({ idleTimeoutMs: 4000, warnBeforeMs: 2000 });
    const c = await studentLogin(gw);
    const sh = await shell(c);
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    const seen = await readUntil(sh.stderr, /disconnected in \d+ s/);
    expect(seen).toContain('[labvirt] no input for a while');
    await closed;
    await until(() => auditLines.some((l) => l.audit === 'ssh.connection.close'));
    expect(auditLines.find((l) => l.audit === 'ssh.connection.close')).toMatchObject({
      reason: 'idle',
    });
  });

  it('warns before the session ends, then disconnects', async () => {
    // The clock moves once the shell is open.
    const { gw, expiresAt, at } = await clockedGateway(
      { warnBeforeMs: 500, idleTimeoutMs: 7200_000 },
      3600_000,
    );
    const c = await studentLogin(gw);
    const sh = await shell(c);
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    at(expiresAt - 400);
    expect(await readUntil(sh.stderr, /Save your work/)).toMatch(/session ends in 1 s/);
    at(expiresAt);
    expect(await readUntil(sh.stderr, /has ended/)).toContain('[labvirt]');
    await closed;
  });

  it('warns a shell that opens after the warning fell due, then disconnects', async () => {
    // The warning falls due while the student is logged in with no channel
    // open (as while a shell's hop to the guest is under way), and ticks
    // (every 500 ms) pass before one opens.
    const { gw, expiresAt, at } = await clockedGateway(
      { warnBeforeMs: 2000, idleTimeoutMs: 60_000 },
      10_000,
    );
    const c = await studentLogin(gw);
    at(expiresAt - 1500);
    await new Promise((r) => setTimeout(r, 1500));
    const sh = await shell(c);
    let bound: NodeJS.Timeout | undefined;
    const warned = await Promise.race([
      readUntil(sh.stderr, /Save your work/),
      new Promise<never>((_, reject) => {
        bound = setTimeout(
          () => reject(new Error('no warning 10 s after the shell opened')),
          10_000,
        );
      }),
    ]).finally(() => clearTimeout(bound));
    expect(warned).toMatch(/\[labvirt\] your lab session ends in 2 s/);
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    at(expiresAt);
    expect(await readUntil(sh.stderr, /has ended/)).toContain('[labvirt]');
    await closed;
  });

  it('disconnects when the session is released early, and follows an extension', async () => {
    // The gateway looks the session up again once its clock has moved on by
    // recheckMs; the test moves it.
    const { gw, expiresAt, at } = await clockedGateway(
      { recheckMs: 100, warnBeforeMs: 500, idleTimeoutMs: 7200_000 },
      3600_000,
    );
    const c = await studentLogin(gw);
    const sh = await shell(c);
    // Extended before the warning time: past the old end, no warning and the
    // connection stays.
    sessions.set(SESSION, session({ expiresAt: new Date(expiresAt + 3600_000) }));
    at(expiresAt + 1000);
    sh.write('echo still-here\n');
    await readUntil(sh, /still-here\r?\n/);
    await new Promise((r) => setTimeout(r, 1000));
    sh.write('echo alive\n');
    await readUntil(sh, /alive\r?\n/);
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    sessions.delete(SESSION);
    at(expiresAt + 2000);
    const told = await readUntil(sh.stderr, /has ended/);
    expect(told).toContain('[labvirt]');
    expect(told).not.toMatch(/Save your work/);
    await closed;
  });

  it('cuts a session at once when the directory tells of its end, not at the next recheck', async () => {
    const listeners = new Set<(sessionId: string) => void>();
    const gw = await gateway({
      recheckMs: 3600_000,
      directory: {
        lookup: async (id) => sessions.get(id),
        onChange: (listener) => {
          listeners.add(listener);
          return () => void listeners.delete(listener);
        },
      },
    });
    const c = await studentLogin(gw);
    const sh = await shell(c);
    // Another session's change leaves this one alone.
    for (const l of listeners) l('s-other00000');
    sh.write('echo still-here\n');
    await readUntil(sh, /still-here\r?\n/);
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    sessions.delete(SESSION);
    for (const l of listeners) l(SESSION);
    expect(await readUntil(sh.stderr, /has ended/)).toContain('[labvirt]');
    await closed;
    await gw.close();
    expect(listeners.size).toBe(0);
  });

  it('sends its notices on a notices channel to a client whose shell is behind a jump', async () => {
    // The session is cut short only once the shell behind the jump answers:
    // on a loaded machine the three logins took up to 1.6 s, and an end fixed
    // before them cut the jump mid-command (the gateway's clock, not the
    // notices, was then under test).
    const gw = await gateway({ recheckMs: 100, warnBeforeMs: 2000, idleTimeoutMs: 60_000 });
    const c = await studentLogin(gw);
    const notices = await new Promise<ClientChannel>((res, rej) =>
      c.subsys(NOTICES_SUBSYSTEM, (err, s) => (err ? rej(err) : res(s))),
    );
    const sock = await forward(c, 'worker-1', 22);
    const inner = await connectClient({
      sock,
      username: 'student',
      privateKey: studentKey.private,
    });
    clients.push(inner);
    expect((await run(inner, 'hostname')).stdout).toBe('worker-1\n');
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    // Inside the warning window at once: the next recheck warns, the end cuts.
    sessions.set(SESSION, session({ expiresAt: new Date(Date.now() + 2000) }));
    // Read as one: a client reading late gets both notices in one chunk.
    const told = await readUntil(notices.stderr, /has ended/);
    expect(told).toMatch(
      /\[labvirt\] your lab session ends in \d+ s[^]*Save your work[^]*\[labvirt\] your lab session has ended; disconnecting/,
    );
    await closed;
  });

  it('tells the student and disconnects when their VM goes away', async () => {
    const own = await farm.start({ labvirt: [labvirtKey.public], student: [] });
    const ex = createExecutor({
      privateKey: labvirtKey.private,
      gatewayPublicKey: gatewayClientKey.public,
      resolve: farm.resolve,
    });
    await ex.installStudentKey(
      { envId: 'envbbbbb', node: 'control-plane', ip: own.ip },
      studentKey.public,
    );
    await ex.close();
    const gw = await gateway({}, [
      session({ envId: 'envbbbbb', nodes: [{ node: 'control-plane', ip: own.ip }] }),
    ]);
    const c = await studentLogin(gw);
    const sh = await shell(c);
    sh.write('echo ready\n');
    await readUntil(sh, /ready\r?\n/);
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    const told = readUntil(sh.stderr, /connection to your environment was closed/);
    await own.guest.stop();
    await told;
    await closed;
    // A new connection while the VM is down gets a clear error instead of hanging.
    const c2 = await studentLogin(gw);
    const r = await run(c2, 'true');
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/could not reach your environment/);
  });

  it('keeps its host key across restarts (file and injected store)', async () => {
    const file = join(workdir, 'keys', 'gateway_host_key');
    const first = await loadOrCreateHostKey(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const seen: string[] = [];
    for (let i = 0; i < 2; i++) {
      const key = await loadOrCreateHostKey(file);
      expect(key.privateKey).toBe(first.privateKey);
      const gw = await gateway({ hostKey: key.privateKey });
      const c = await studentLogin(gw, {
        hostVerifier: (k: Buffer) => {
          seen.push(k.toString('base64'));
          return true;
        },
      });
      c.end();
      await gw.close();
    }
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(seen[1]);
    expect(first.publicKey).toContain(seen[0]);

    let stored: string | undefined;
    const store: KeyStore = { get: async () => stored, put: async (k) => void (stored = k) };
    const a = await loadOrCreateHostKey(store);
    const b = await loadOrCreateHostKey(store);
    expect(a.fingerprint).toBe(b.fingerprint);
    await expect(
      loadOrCreateHostKey({ get: async () => 'garbage', put: async () => undefined }),
    ).rejects.toThrow(/usable/);
  });
});

/** What a local channel printed, until `pattern` shows. */
function readLocalUntil(ch: LocalChannel, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in: ${seen}`)), 15_000);
    ch.onOutput((d) => {
      seen += d.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
  });
}

/** The notices an in-process session hears, and a wait for one. */
function noticesOf(session: LocalSession) {
  const heard: string[] = [];
  const waiters: (() => void)[] = [];
  session.onNotice((text) => {
    heard.push(text);
    for (const w of waiters.splice(0)) w();
  });
  return {
    heard,
    until: (pattern: RegExp) =>
      new Promise<string>((resolve) => {
        const look = () => {
          const hit = heard.find((t) => pattern.test(t));
          if (hit) resolve(hit);
          else waiters.push(look);
        };
        look();
      }),
  };
}

const closeOf = (session: LocalSession) =>
  new Promise<string>((resolve) => session.onClose(resolve));

/** An audit line without what differs between two connections by nature (ids, times, addresses, byte counts). */
function shape(line: Record<string, unknown> | undefined) {
  if (!line) return line;
  const {
    connId,
    source,
    startedAt,
    endedAt,
    time,
    pid,
    hostname,
    bytesIn,
    bytesOut,
    key,
    ...rest
  } = line;
  void [connId, source, startedAt, endedAt, time, pid, hostname, bytesIn, bytesOut, key];
  return rest;
}

const auditFor = (kind: string, source: (s: string) => boolean) =>
  auditLines.filter((l) => l.audit === kind && source(String(l.source)));
const local = (s: string) => s === 'in-process:0';
const tcp = (s: string) => s.startsWith('127.0.0.1:');

describe('in-process sessions (the web terminal bridge) under the SSH rules', () => {
  it('open a shell and are audited like an SSH login, with no key in the lines', async () => {
    const gw = await gateway();
    const c = await studentLogin(gw);
    const sh = await shell(c);
    sh.write('echo "on $(hostname)" sum=$((2+3))\n');
    await readUntil(sh, /sum=5/);
    const session = await gw.openSession(SESSION);
    expect(gw.connections).toBe(2);
    const ch = await session.shell({ term: 'xterm', cols: 80, rows: 24 });
    ch.write('echo "on $(hostname)" sum=$((2+3))\n');
    expect(await readLocalUntil(ch, /sum=5/)).toContain('on control-plane');
    const closedLocal = closeOf(session);
    session.end();
    c.end();
    await closedLocal;
    await until(() => auditLines.filter((l) => l.audit === 'ssh.connection.close').length === 2);
    for (const kind of ['ssh.connection.open', 'ssh.connection.close']) {
      const [viaSsh] = auditFor(kind, tcp);
      const [inProcess] = auditFor(kind, local);
      expect(shape(inProcess), kind).toEqual(shape(viaSsh));
    }
    const close = auditFor('ssh.connection.close', local)[0]!;
    expect(close).toMatchObject({ channels: { session: 1, shell: 1 }, student: 'ada' });
    expect(close.bytesIn).toBeGreaterThan(0);
    expect(close.bytesOut).toBeGreaterThan(0);
    expect(gw.connections).toBe(0);
    const all = JSON.stringify(auditLines);
    expect(all).not.toContain(labvirtKey.private);
    expect(all).not.toContain(gatewayClientKey.private);
  });

  it('are refused where an SSH login is, for the same reasons, audited alike', async () => {
    const gw = await gateway({}, [
      session(),
      session({ sessionId: 's-expired000', expiresAt: new Date(Date.now() - 1000) }),
      session({ sessionId: 's-refused000', refusal: 'ask an operator: this env predates X' }),
    ]);
    for (const id of ['s-nosuchthin', 's-expired000', 's-refused000']) {
      auditLines = [];
      const told = await refusedLogin(gw, id, studentKey.private);
      const err = await gw.openSession(id).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, id).toBeInstanceOf(GatewayRefusal);
      expect(told, id).toContain((err as Error).message);
      const [viaSsh] = auditFor('ssh.auth.refused', tcp);
      const [inProcess] = auditFor('ssh.auth.refused', local);
      expect(inProcess, id).toBeDefined();
      expect(shape(inProcess), id).toEqual(shape(viaSsh));
      // Refused: no open line for either.
      expect(auditLines.some((l) => l.audit === 'ssh.connection.open')).toBe(false);
    }
    await expect(gw.openSession('bad name;rm')).rejects.toThrow(/log in as your session id/);
    await until(() => gw.connections === 0);
  });

  it('tell the student to retry when the session cannot be looked up, as SSH does', async () => {
    const gw = await gateway({
      directory: { lookup: () => Promise.reject(new Error('redis down')) },
      lookupRetryBudgetMs: 300,
    });
    const err = await gw.openSession(SESSION).catch((e: unknown) => e as GatewayRefusal);
    expect(err).toBeInstanceOf(GatewayRefusal);
    expect((err as GatewayRefusal).unavailable).toBe(true);
    expect((err as Error).message).toMatch(/could not look up session .* try again/);
    expect(auditFor('ssh.auth.unavailable', local)).toHaveLength(1);
  });

  it('are warned, then cut when idle, like an SSH shell beside them; input keeps them open', async () => {
    const gw = await gateway({ idleTimeoutMs: 4000, warnBeforeMs: 2000 });
    const c = await studentLogin(gw);
    const sh = await shell(c);
    const idle = await gw.openSession(SESSION);
    const idleShell = await idle.shell({ term: 'xterm', cols: 80, rows: 24 });
    idleShell.onOutput(() => undefined);
    const idleNotices = noticesOf(idle);
    // A second in-process session that keeps typing stays.
    const busy = await gw.openSession(SESSION);
    const busyShell = await busy.shell({ term: 'xterm', cols: 80, rows: 24 });
    let busyOpen = true;
    void closeOf(busy).then(() => (busyOpen = false));
    const typing = setInterval(() => busyShell.write(' '), 500);
    try {
      const sshClosed = new Promise<void>((r) => c.on('close', () => r()));
      const warnedSsh = readUntil(sh.stderr, /disconnected in \d+ s/);
      expect(await idleNotices.until(/no input for a while/)).toMatch(/disconnected in \d+ s/);
      expect(await warnedSsh).toContain('[labvirt] no input for a while');
      const reason = await closeOf(idle);
      expect(reason).toMatch(/disconnecting after 4 s without input/);
      expect(idleNotices.heard).toContain(reason);
      await sshClosed;
      await until(() => auditLines.filter((l) => l.audit === 'ssh.connection.close').length === 2);
      expect(busyOpen).toBe(true);
    } finally {
      clearInterval(typing);
    }
    const [viaSsh] = auditFor('ssh.connection.close', tcp);
    const [inProcess] = auditFor('ssh.connection.close', local);
    expect(inProcess).toMatchObject({ reason: 'idle' });
    expect(viaSsh).toMatchObject({ reason: 'idle' });
    busy.end();
  });

  it('are cut when the session ends mid-shell, at once on a change notice, like SSH', async () => {
    const listeners = new Set<(sessionId: string) => void>();
    const gw = await gateway({
      recheckMs: 3600_000,
      directory: {
        lookup: async (id) => sessions.get(id),
        onChange: (listener) => {
          listeners.add(listener);
          return () => void listeners.delete(listener);
        },
      },
    });
    const c = await studentLogin(gw);
    const sh = await shell(c);
    const s = await gw.openSession(SESSION);
    const ch = await s.shell({ term: 'xterm', cols: 80, rows: 24 });
    const notices = noticesOf(s);
    ch.write('echo still-here\n');
    await readLocalUntil(ch, /still-here\r?\n/);
    // Stopped: gone from the directory, and the change told.
    const sshClosed = new Promise<void>((r) => c.on('close', () => r()));
    const told = readUntil(sh.stderr, /has ended/);
    sessions.delete(SESSION);
    for (const l of listeners) l(SESSION);
    expect(await closeOf(s)).toBe('your lab session has ended; disconnecting.');
    expect(notices.heard).toContain('your lab session has ended; disconnecting.');
    expect(await told).toContain('[labvirt] your lab session has ended; disconnecting.');
    await sshClosed;
    await until(() => auditLines.filter((l) => l.audit === 'ssh.connection.close').length === 2);
    expect(auditFor('ssh.connection.close', local)[0]).toMatchObject({ reason: 'session ended' });
    expect(auditFor('ssh.connection.close', tcp)[0]).toMatchObject({ reason: 'session ended' });
    // A new in-process session of the ended one is refused.
    await expect(gw.openSession(SESSION)).rejects.toThrow(/no active lab session/);
  });

  it('are cut at the session end time by the gateway clock, after a warning', async () => {
    const { gw, expiresAt, at } = await clockedGateway(
      { warnBeforeMs: 500, idleTimeoutMs: 7200_000 },
      3600_000,
    );
    const s = await gw.openSession(SESSION);
    const notices = noticesOf(s);
    const closed = closeOf(s);
    at(expiresAt - 400);
    expect(await notices.until(/Save your work/)).toMatch(/session ends in 1 s/);
    at(expiresAt);
    expect(await closed).toMatch(/has ended/);
    await until(() => auditLines.some((l) => l.audit === 'ssh.connection.close'));
    expect(auditFor('ssh.connection.close', local)[0]).toMatchObject({
      reason: 'session expired',
    });
  });

  it("jump only to the env's own nodes on port 22, refusals audited like SSH's", async () => {
    const gw = await gateway();
    const s = await gw.openSession(SESSION);
    const notices = noticesOf(s);
    const sock = await s.jump('worker-1', 22);
    const inner = await connectClient({
      sock,
      username: 'student',
      privateKey: studentKey.private,
    });
    clients.push(inner);
    expect((await run(inner, 'hostname')).stdout).toBe('worker-1\n');
    inner.end();
    for (const [host, port] of [
      [otherEnvNode.ip, 22],
      ['127.0.0.1', 22],
      ['worker-1', 6443],
    ] as const) {
      await expect(s.jump(host, port)).rejects.toThrow(/refused/);
    }
    expect(auditFor('ssh.jump.refused', local)).toHaveLength(3);
    expect(notices.heard.filter((t) => /^refused a connection to/.test(t))).toHaveLength(3);
    const closed = closeOf(s);
    s.end();
    await closed;
    await until(() => auditLines.some((l) => l.audit === 'ssh.connection.close'));
    expect(auditFor('ssh.connection.close', local)[0]).toMatchObject({
      channels: { 'direct-tcpip': 1 },
    });
  });
});
