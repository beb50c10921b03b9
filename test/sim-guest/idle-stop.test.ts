import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';
import { sandboxSupport } from '../../src/sim/guest/index.js';
import { startSandboxedSpawner } from '../../src/sim/guest/sandbox.js';
import type { SpawnedCommand, Spawner } from '../../src/sim/guest/spawner.js';
import { GuestFarm, connectClient, guestProcesses, newKey, run } from './fixtures.js';

/**
 * A guest's helper process goes away when nothing runs in the guest
 * (`idleStopMs`, the sim's `guestIdleStopSeconds`) and comes back on demand:
 * what a student sees of the guest must not change.
 */
const IDLE_MS = 1000;
const farm = new GuestFarm();
const clients: Client[] = [];
const spawners: Spawner[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end();
  for (const s of spawners.splice(0)) s.stop();
  await farm.stopAll();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function idleGuest(extra: Parameters<GuestFarm['start']>[1] = {}) {
  const key = newKey();
  const g = await farm.start({ student: [key.public] }, { idleStopMs: IDLE_MS, ...extra });
  const c = await connectClient({
    port: g.guest.port,
    username: 'student',
    privateKey: key.private,
  });
  clients.push(c);
  return { ...g, c };
}

const helpersOf = (root: string) => guestProcesses(root).helpers;
const WAIT = { timeout: 30_000, interval: 100 };

describe('an idle guest', () => {
  it('lets its helper go, and the next command brings it back with the guest’s files', async () => {
    const g = await idleGuest();
    const first = await run(g.c, 'echo kept > /root/note; readlink /proc/self/ns/pid');
    expect(first.code).toBe(0);
    expect(helpersOf(g.sandbox)).toBe(1);
    await expect
      .poll(() => guestProcesses(g.sandbox), { ...WAIT, message: 'the idle guest’s processes' })
      .toEqual({ all: 0, helpers: 0 });
    // The same SSH connection: sshd is the simulator's, not the helper's.
    const again = await run(g.c, 'cat /root/note; readlink /proc/self/ns/pid');
    expect(again.code).toBe(0);
    const [note, ns] = again.stdout.split('\n');
    expect(note).toBe('kept');
    // A helper started afresh: a new PID namespace.
    expect(ns).not.toBe(first.stdout.trim());
    expect(helpersOf(g.sandbox)).toBe(1);
  }, 60_000);

  it('keeps its helper, and the process, while a background process started over SSH runs', async () => {
    const g = await idleGuest();
    const started = await run(
      g.c,
      "nohup sh -c 'echo $$ > /tmp/beat.pid; while :; do date +%s%N >> /tmp/beat; sleep 0.1; done' >/dev/null 2>&1 &",
    );
    expect(started.code).toBe(0);
    // Beats over three idle periods: time enough for an idle stop to have happened.
    const beats = async () => {
      const r = await run(g.c, 'cat /tmp/beat 2>/dev/null');
      const ns = r.stdout.trim().split('\n').filter(Boolean).map(Number);
      return ns.length > 1 ? (ns[ns.length - 1]! - ns[0]!) / 1e6 : 0;
    };
    // Read from the host (a command would keep the guest busy itself).
    const beatsFromHost = async () => {
      const text = await readFile(join(g.sandbox, 'tmp/beat'), 'utf8').catch(() => '');
      const ns = text.trim().split('\n').filter(Boolean).map(Number);
      return ns.length > 1 ? (ns[ns.length - 1]! - ns[0]!) / 1e6 : 0;
    };
    await expect
      .poll(beatsFromHost, { ...WAIT, message: 'the background job’s beats' })
      .toBeGreaterThan(4 * IDLE_MS);
    expect(helpersOf(g.sandbox)).toBe(1);
    const span = await beats();
    expect(span).toBeGreaterThan(4 * IDLE_MS);
    // Still beating: the job was never killed with a namespace going away.
    const before = await beatsFromHost();
    await expect.poll(beatsFromHost, WAIT).toBeGreaterThan(before);
    // Once the job ends, nothing is left and the helper goes.
    expect((await run(g.c, 'kill "$(cat /tmp/beat.pid)"')).code).toBe(0);
    await expect
      .poll(() => helpersOf(g.sandbox), { ...WAIT, message: 'the helper after the job ended' })
      .toBe(0);
  }, 60_000);

  it('serves its listeners, and reaches its peers, after its helper came back', async () => {
    const worker = await idleGuest({ listenAddress: '127.77.1.2' });
    const g = await idleGuest({ listenAddress: '127.77.1.1' });
    // As the sim's env network does: the peer's sshd at its address, inside the guest.
    g.guest.allowOutbound('127.77.1.2', 22, () => ({ host: '127.0.0.1', port: worker.guest.port }));
    expect((await run(g.c, 'true')).code).toBe(0);
    await expect.poll(() => helpersOf(g.sandbox), WAIT).toBe(0);
    // The first command of a fresh helper connects at once: its listener is already there.
    const banner = await run(
      g.c,
      'node -e \'require("net").connect(22, "127.77.1.2").once("data", (d) => { console.log(String(d).trim()); process.exit(0); })\'',
    );
    expect(banner.stdout).toMatch(/^SSH-2\.0-/);
    await expect.poll(() => helpersOf(g.sandbox), WAIT).toBe(0);
    // A student's server in the background, reached through the guest's address seam.
    const server = await run(
      g.c,
      'nohup node -e \'require("net").createServer((s) => s.pipe(s)).listen(8080, process.env.LABVIRT_GUEST_ADDR, () => require("fs").writeFileSync("/tmp/up", "1"))\' >/dev/null 2>&1 & while [ ! -e /tmp/up ]; do sleep 0.05; done',
    );
    expect(server.code).toBe(0);
    const echo = async () => {
      const s = await g.guest.connect(8080);
      const reply = new Promise<string>((resolve, reject) => {
        s.once('data', (d: Buffer) => resolve(d.toString()));
        s.once('error', reject);
      });
      s.write('ping');
      s.resume();
      const r = await reply;
      s.destroy();
      return r;
    };
    expect(await echo()).toBe('ping');
    // It stays up past idle periods: the server keeps the helper.
    const t0 = Date.now();
    await expect.poll(() => Date.now() - t0 > 3 * IDLE_MS && helpersOf(g.sandbox), WAIT).toBe(1);
    expect(await echo()).toBe('ping');
  }, 60_000);

  it('runs a command that arrives while its helper asks to go, and one sent just after it went', async () => {
    const { bwrap } = sandboxSupport();
    if (!bwrap) throw new Error('bubblewrap is needed (the suite runs guests sandboxed)');
    const root = await mkdtemp(join(tmpdir(), 'labvirt-idle-'));
    const tools = await mkdtemp(join(tmpdir(), 'labvirt-idle-tools-'));
    dirs.push(root, tools);
    const output = (cmd: SpawnedCommand) =>
      new Promise<string>((resolve) => {
        let out = '';
        cmd.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        cmd.on('close', (code: number | null) => resolve(`${out}exit ${code}`));
        cmd.stdin!.end();
      });
    const sh = (line: string) =>
      spawner.spawn('/bin/sh', ['-c', line], { cwd: '/', env: { PATH: '/usr/bin:/bin' } });
    let requests = 0;
    let raced: Promise<string> | undefined;
    let afterStop: Promise<string> | undefined;
    const spawner: Spawner = await startSandboxedSpawner(
      bwrap,
      { root, hostname: 'idle', toolsDir: tools },
      {
        idleStopMs: 300,
        // The helper has found itself idle and asked to go; the command is sent before the answer.
        onIdleRequest: () => {
          if (requests++ === 0) raced = sh('readlink /proc/self/ns/pid').then(output);
        },
        // It was let go (disconnected, still exiting): the next command must find another.
        onIdleStop: () => {
          afterStop ??= sh('readlink /proc/self/ns/pid').then(output);
        },
      },
    );
    spawners.push(spawner);
    expect(await output(await sh('echo up'))).toBe('up\nexit 0');
    await expect.poll(() => afterStop, { ...WAIT, message: 'an idle stop' }).toBeDefined();
    const [a, b] = await Promise.all([raced!, afterStop!]);
    expect(a).toMatch(/^pid:\[\d+\]\nexit 0$/);
    expect(b).toMatch(/^pid:\[\d+\]\nexit 0$/);
    // The raced command kept the first helper; the later one ran in a new one.
    expect(a).not.toBe(b);
  }, 60_000);
});
