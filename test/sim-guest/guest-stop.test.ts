import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sandboxSupport } from '../../src/sim/guest/index.js';
import { startSandboxedSpawner } from '../../src/sim/guest/sandbox.js';
import type { SpawnerOptions } from '../../src/sim/guest/spawner.js';
import { GuestFarm, connectClient, guestProcesses, newKey, run } from './fixtures.js';

const farm = new GuestFarm();
const dirs: string[] = [];
afterEach(async () => {
  await farm.stopAll();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A student's job left running in the guest, writing all the time. */
const BUSY_JOB =
  "nohup sh -c 'while :; do date >> /tmp/busy; done' >/dev/null 2>&1 & sleep 0.2; test -s /tmp/busy && echo writing";

/**
 * A stopped guest writes nothing more in its files: the simulator's stop()
 * returns after its guests', and a test then removes their directories (one
 * met ENOTEMPTY from a guest process still writing).
 */
describe('a guest’s stop()', () => {
  it('returns once every process in the guest is gone', async () => {
    const key = newKey();
    const g = await farm.start({ student: [key.public] });
    expect(g.guest.sandboxed).toBe(true);
    const c = await connectClient({
      port: g.guest.port,
      username: 'student',
      privateKey: key.private,
    });
    expect((await run(c, BUSY_JOB)).stdout).toBe('writing\n');
    c.end();
    await g.guest.stop();
    expect(guestProcesses(g.sandbox)).toEqual({ all: 0, helpers: 0 });
    await rm(g.sandbox, { recursive: true });
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(g.sandbox)).toBe(false);
  });

  /*
   * bwrap exits as soon as its command (the helper) does; the sandbox's init
   * stays while a student's job runs and is killed only after that. Nine
   * times in ten the init and the job were still there when the spawner saw
   * bwrap exit, and CI once saw them after a guest's stop() (the case above).
   */
  async function sandboxedSpawner(options: SpawnerOptions = {}) {
    const { bwrap } = sandboxSupport();
    if (!bwrap) throw new Error('bubblewrap is needed (the suite runs guests sandboxed)');
    const root = await mkdtemp(join(tmpdir(), 'labvirt-stop-'));
    const tools = await mkdtemp(join(tmpdir(), 'labvirt-stop-tools-'));
    dirs.push(root, tools);
    const spawner = await startSandboxedSpawner(
      bwrap,
      { root, hostname: 'stop', toolsDir: tools },
      options,
    );
    const startBusyJob = async () => {
      const cmd = await spawner.spawn('/bin/sh', ['-c', BUSY_JOB], {
        cwd: '/',
        env: { PATH: '/usr/bin:/bin' },
      });
      cmd.stdin!.end();
      let out = '';
      cmd.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((resolve) => cmd.once('close', resolve));
      return out;
    };
    return { spawner, root, startBusyJob };
  }

  it('waits, at the spawner, for the sandbox’s init and what it still runs', async () => {
    for (let i = 0; i < 5; i++) {
      const { spawner, root, startBusyJob } = await sandboxedSpawner();
      expect(await startBusyJob()).toBe('writing\n');
      expect(guestProcesses(root).all).toBeGreaterThanOrEqual(3);
      await spawner.stop();
      expect(guestProcesses(root), `stop ${i + 1} of 5`).toEqual({ all: 0, helpers: 0 });
    }
  });

  it('waits for a helper let go while idle that has not yet exited', async () => {
    let letGo: (() => void) | undefined;
    const wentIdle = new Promise<void>((resolve) => (letGo = resolve));
    const { spawner, root } = await sandboxedSpawner({
      idleStopMs: 300,
      onIdleStop: () => letGo!(),
    });
    const cmd = await spawner.spawn('/bin/true', [], { cwd: '/', env: {} });
    cmd.stdin!.end();
    await wentIdle;
    // Disconnected, on its way out: stop() finds no current helper.
    await spawner.stop();
    expect(guestProcesses(root)).toEqual({ all: 0, helpers: 0 });
  });
});
