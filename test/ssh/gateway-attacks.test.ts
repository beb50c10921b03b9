import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import ssh2, { type Client, type ConnectConfig } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createExecutor,
  startGateway,
  type Gateway,
  type GatewayOptions,
  type GatewaySession,
} from '../../src/ssh/index.js';
import { GuestFarm, newKey, type TestGuest } from '../sim-guest/fixtures.js';

/** The SSH gateway under the attacks and the load it must withstand. */
const farm = new GuestFarm();
const labvirtKey = newKey();
/** The gateway's own key for its hop (ssh.gatewayClientKey). */
const gatewayClientKey = newKey();
const studentKey = newKey();
const gatewayKey = newKey();
let cp: TestGuest;
let workdir: string;
let auditLines: Record<string, unknown>[] = [];
let logLines: Record<string, unknown>[] = [];
const gateways: Gateway[] = [];
const clients: Client[] = [];
const sockets: Socket[] = [];

const sink = (into: () => Record<string, unknown>[]) =>
  pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n').filter(Boolean))
          into().push(JSON.parse(line));
        cb();
      },
    }),
  );
const audit = sink(() => auditLines);
const logger = sink(() => logLines);

beforeAll(async () => {
  workdir = await mkdtemp(join(tmpdir(), 'labvirt-gw-attack-'));
  cp = await farm.start({ labvirt: [labvirtKey.public], student: [] });
  const ex = createExecutor({
    privateKey: labvirtKey.private,
    gatewayPublicKey: gatewayClientKey.public,
    resolve: farm.resolve,
  });
  await ex.installStudentKey(
    { envId: 'envaaaaa', node: 'control-plane', ip: cp.ip },
    studentKey.public,
  );
  await ex.close();
});
afterAll(async () => {
  await farm.stopAll();
  await rm(workdir, { recursive: true, force: true });
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.end();
  for (const s of sockets.splice(0)) s.destroy();
  for (const g of gateways.splice(0)) await g.close();
  auditLines = [];
  logLines = [];
});

const sessionId = (i: number) => `s-${String(i).padStart(10, '0')}`;

function session(id: string): GatewaySession {
  return {
    sessionId: id,
    student: `student-${id}`,
    envId: 'envaaaaa',
    expiresAt: new Date(Date.now() + 3600_000),
    publicKeys: [studentKey.public],
    nodes: [{ node: 'control-plane', ip: cp.ip }],
  };
}

async function gateway(extra: Partial<GatewayOptions>) {
  const gw = await startGateway({
    hostKey: gatewayKey.private,
    host: '127.0.0.1',
    port: 0,
    directory: { lookup: async (id) => session(id) },
    clientKey: gatewayClientKey.private,
    resolve: farm.resolve,
    audit,
    logger,
    ...extra,
  });
  gateways.push(gw);
  return gw;
}

/** Logs in; resolves on success, rejects with what the gateway said otherwise. */
function login(gw: Gateway, extra: Partial<ConnectConfig> = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    clients.push(c);
    let told = '';
    c.on('keyboard-interactive', (_n, instructions, _l, _p, finish) => {
      told += instructions;
      finish(['']);
    });
    c.once('ready', () => resolve(c));
    c.once('error', (err) => reject(new Error(`${err.message}: ${told}`)));
    c.connect({
      host: '127.0.0.1',
      port: gw.port,
      username: sessionId(1),
      privateKey: studentKey.private,
      tryKeyboard: true,
      readyTimeout: 120_000,
      ...extra,
    });
  });
}

/** A raw TCP connection that says nothing; resolves when the gateway closes it. */
function silentSocket(gw: Gateway, localAddress: string): { closed: Promise<number> } {
  const opened = Date.now();
  const sock = tcpConnect({ host: '127.0.0.1', port: gw.port, localAddress });
  sockets.push(sock);
  sock.on('error', () => undefined);
  sock.resume();
  return {
    closed: new Promise((resolve) => sock.once('close', () => resolve(Date.now() - opened))),
  };
}

const stillOpen = (closed: Promise<number>, ms: number) =>
  Promise.race([closed.then(() => false), new Promise((r) => setTimeout(() => r(true), ms))]);

describe('ssh gateway under attack and load', () => {
  it('lets 300 simultaneous logins in while lookups time out and fail at first (ssh2 and OpenSSH)', async () => {
    // The first 200 lookups fail the way an overloaded Redis does, some by
    // error and some by never answering; later ones are slow but answer.
    let calls = 0;
    const gw = await gateway({
      lookupTimeoutMs: 300,
      directory: {
        lookup: async (id) => {
          const n = ++calls;
          if (n <= 100) throw new Error('Command timed out');
          if (n <= 200) return new Promise<never>(() => undefined);
          await new Promise((r) => setTimeout(r, Math.random() * 50));
          return session(id);
        },
      },
    });
    const keyFile = join(workdir, 'id_student');
    await writeFile(keyFile, studentKey.private, { mode: 0o600 });
    const openssh = (i: number) =>
      promisify(execFile)('ssh', [
        ...['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'],
        ...['-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-i', keyFile],
        ...['-b', '127.0.0.250', '-p', String(gw.port), `${sessionId(1000 + i)}@127.0.0.1`],
        'echo in',
      ]);
    // Ten source addresses, 30 students behind each (a classroom behind NAT).
    const results = await Promise.allSettled([
      ...Array.from({ length: 296 }, (_, i) =>
        login(gw, { username: sessionId(i), localAddress: `127.0.0.${10 + (i % 10)}` }).then(
          () => 'in',
        ),
      ),
      ...Array.from({ length: 4 }, (_, i) => openssh(i).then((r) => r.stdout.trim())),
    ]);
    const failures = results.filter((r) => r.status === 'rejected');
    expect(failures.map((f) => String((f as PromiseRejectedResult).reason))).toEqual([]);
    expect(results.every((r) => r.status === 'fulfilled' && r.value === 'in')).toBe(true);
    expect(calls).toBeGreaterThan(300);
    expect(auditLines.filter((l) => l.audit === 'ssh.connection.open')).toHaveLength(300);
    expect(JSON.stringify(auditLines)).not.toMatch(/no active lab session/);
  }, 180_000);

  it('tells the student to retry when the session cannot be looked up, never "no active lab session"', async () => {
    const gw = await gateway({
      lookupRetryBudgetMs: 1000,
      directory: {
        lookup: async () => {
          throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
        },
      },
    });
    const err = await login(gw).then(
      () => new Error('login unexpectedly accepted'),
      (e: Error) => e,
    );
    expect(err.message).toMatch(/could not look up session s-0000000001 just now.*try again/);
    expect(err.message).not.toMatch(/no active lab session/);
    expect(logLines).toContainEqual(
      expect.objectContaining({
        msg: 'session lookup failed; the student was told to retry',
        sessionId: sessionId(1),
        attempts: expect.any(Number),
      }),
    );
    expect(auditLines).toContainEqual(
      expect.objectContaining({ audit: 'ssh.auth.unavailable', sessionId: sessionId(1) }),
    );
  });

  it('audits every wrong-key attempt, including keys OpenSSH only offers, without key material', async () => {
    const gw = await gateway({});
    const wrong = newKey();
    const wrongFile = join(workdir, 'id_wrong');
    await writeFile(wrongFile, wrong.private, { mode: 0o600 });
    await expect(
      promisify(execFile)('ssh', [
        ...['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'],
        ...['-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes'],
        ...['-i', wrongFile, '-p', String(gw.port), `${sessionId(7)}@127.0.0.1`, 'true'],
      ]),
    ).rejects.toThrow(/Permission denied/);
    await expect(login(gw, { privateKey: wrong.private })).rejects.toThrow(/not the one/);
    const refused = auditLines.filter((l) => l.audit === 'ssh.auth.refused');
    expect(refused.length).toBeGreaterThanOrEqual(2);
    const fingerprint = `SHA256:${(await import('node:crypto'))
      .createHash('sha256')
      .update(Buffer.from(wrong.public.split(' ')[1]!, 'base64'))
      .digest('base64')
      .replace(/=+$/, '')}`;
    for (const line of refused) {
      expect(line).toMatchObject({
        sessionId: expect.stringMatching(/^s-/),
        source: expect.stringMatching(/^127\.0\.0\.1:/),
        key: fingerprint,
        reason: expect.stringMatching(/not the one/),
      });
    }
    expect(JSON.stringify(auditLines)).not.toContain(wrong.public.split(' ')[1]);
  });

  it('closes connections that do not log in within the authentication timeout', async () => {
    const gw = await gateway({ authTimeoutMs: 700 });
    // One never sends its SSH greeting; one finishes the handshake but never authenticates.
    const silent = silentSocket(gw, '127.0.0.1');
    const stalled = new ssh2.Client();
    clients.push(stalled);
    const stalledClosed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
    stalled.on('error', () => undefined);
    stalled.connect({
      host: '127.0.0.1',
      port: gw.port,
      username: sessionId(1),
      authHandler: () => undefined,
      readyTimeout: 60_000,
    });
    expect(await silent.closed).toBeLessThan(5000);
    await stalledClosed;
    // Each is audited: the silent one at the greeting, the stalled one after its key exchange.
    expect(auditLines).toContainEqual(
      expect.objectContaining({ audit: 'ssh.auth.timeout', timeoutMs: 700, stage: 'greeting' }),
    );
    expect(auditLines).toContainEqual(
      expect.objectContaining({
        audit: 'ssh.auth.timeout',
        timeoutMs: 700,
        connId: expect.any(String),
      }),
    );
    // A student who logs in in time is not cut off by the timer.
    const c = await login(gw);
    await new Promise((r) => setTimeout(r, 1000));
    await new Promise<void>((resolve, reject) =>
      c.exec('echo still here', (err, stream) => {
        if (err) return reject(err);
        let out = '';
        stream.on('data', (d: Buffer) => (out += d.toString()));
        stream.on('close', () => (out === 'still here\n' ? resolve() : reject(new Error(out))));
      }),
    );
  });

  it('caps connections not yet logged in, per source address and in total', async () => {
    const gw = await gateway({ maxUnauthenticatedPerSource: 3, maxUnauthenticated: 5 });
    const flood = [1, 2, 3].map(() => silentSocket(gw, '127.0.0.2'));
    await new Promise((r) => setTimeout(r, 200));
    // The fourth from the same address is closed at once; the first three stay.
    const fourth = silentSocket(gw, '127.0.0.2');
    expect(await fourth.closed).toBeLessThan(2000);
    for (const f of flood) expect(await stillOpen(f.closed, 100)).toBe(true);
    // Another address still gets in, and logging in frees its place.
    await login(gw, { localAddress: '127.0.0.3' });
    const more = [1, 2].map(() => silentSocket(gw, '127.0.0.4'));
    await new Promise((r) => setTimeout(r, 200));
    for (const m of more) expect(await stillOpen(m.closed, 100)).toBe(true);
    // Five are waiting now: the total cap refuses a sixth from anywhere.
    const sixth = silentSocket(gw, '127.0.0.5');
    expect(await sixth.closed).toBeLessThan(2000);
    expect(auditLines).toContainEqual(
      expect.objectContaining({
        audit: 'ssh.connection.refused',
        source: '127.0.0.2',
        reason: 'too many connections not yet logged in from this address',
      }),
    );
    // When the flood goes, its places are free again.
    for (const s of sockets) if (s.localAddress === '127.0.0.2') s.destroy();
    await new Promise((r) => setTimeout(r, 200));
    await login(gw, { localAddress: '127.0.0.2' });
  });
});
