import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type * as Fixtures from './fixtures.js';

/**
 * The sim's `sudo` stand-in used to live at a fixed path under $TMPDIR
 * (labvirt-sim-bin-<hash of its text>/sudo) and was used if it existed: any
 * local user could plant a file there that every lab step then ran as root.
 */
const OLD_FIXED_DIR = 'labvirt-sim-bin-4ccdd0fecea6';
let fixtures: typeof Fixtures;
let farm: Fixtures.GuestFarm;
const clients: Client[] = [];
let tmp: string;
let marker: string;
const previousTmpdir = process.env.TMPDIR;

beforeAll(async () => {
  // A TMPDIR of this test's own, so the planted file harms no other run on the machine.
  tmp = await mkdtemp(join(tmpdir(), 'labvirt-shim-test-'));
  process.env.TMPDIR = tmp;
  marker = join(tmp, 'planted-ran');
  await mkdir(join(tmp, OLD_FIXED_DIR), { recursive: true });
  await writeFile(join(tmp, OLD_FIXED_DIR, 'sudo'), `#!/bin/sh\ntouch ${marker}\nexec "$@"\n`, {
    mode: 0o755,
  });
  // The stand-in's directory is made once per process, on first use: fresh
  // modules here, so it is made under this TMPDIR even when an earlier test
  // file in the same worker already made one (the suite shares modules).
  vi.resetModules();
  fixtures = await import('./fixtures.js');
  farm = new fixtures.GuestFarm();
});

afterAll(async () => {
  for (const c of clients) c.end();
  await farm?.stopAll();
  process.env.TMPDIR = previousTmpdir;
  if (previousTmpdir === undefined) delete process.env.TMPDIR;
  await rm(tmp, { recursive: true, force: true });
  // Later test files in this worker get modules of their own again, not the
  // ones made under this file's TMPDIR.
  vi.resetModules();
});

/** A fresh guest, and labvirt logged in to it over SSH. */
async function newGuestLogin(): Promise<Client> {
  const key = fixtures.newKey();
  const g = await farm.start({ labvirt: [key.public] });
  const c = await fixtures.connectClient({
    port: g.guest.port,
    username: 'labvirt',
    privateKey: key.private,
  });
  clients.push(c);
  return c;
}

describe('the sim sudo stand-in', () => {
  it('ignores a file planted at the old fixed path and lives in a private directory', async () => {
    const { run } = fixtures;
    const c = await newGuestLogin();
    const r = await run(c, 'command -v sudo; sudo -u student sh -c \'echo "$USER $HOME"\'');
    expect(r.stdout).toBe('/opt/labvirt-sim/bin/sudo\nstudent /home/student\n');
    expect(existsSync(marker)).toBe(false);
    // The stand-in's directory on the host: fresh, private to this process.
    const { readdir } = await import('node:fs/promises');
    const dirs = (await readdir(tmp)).filter(
      (d) => d.startsWith('labvirt-sim-bin-') && d !== OLD_FIXED_DIR,
    );
    expect(dirs).toHaveLength(1);
    const st = await stat(join(tmp, dirs[0]!));
    expect(st.mode & 0o777).toBe(0o700);
    expect(st.uid).toBe(process.getuid!());
    // The guest cannot change it either.
    expect((await run(c, 'echo x > /opt/labvirt-sim/bin/sudo')).code).not.toBe(0);
  });

  it('makes its directory again when it has gone, so guests started afterwards still start', async () => {
    const { run } = fixtures;
    const { readdir } = await import('node:fs/promises');
    const simBin = async () =>
      (await readdir(tmp)).filter((d) => d.startsWith('labvirt-sim-bin-') && d !== OLD_FIXED_DIR);
    // As a tmp cleaner would on a long-running sim.
    for (const d of await simBin()) await rm(join(tmp, d), { recursive: true, force: true });
    const c = await newGuestLogin();
    const r = await run(c, 'sudo -u student sh -c \'echo "$USER $HOME"\'');
    expect(r.stdout).toBe('student /home/student\n');
    expect(await simBin()).toHaveLength(1);
  });
  it('clears what a process killed by a signal left, and nothing else', async () => {
    const { readdir, readFile } = await import('node:fs/promises');
    const simBin = async () =>
      (await readdir(tmp)).filter((d) => d.startsWith('labvirt-sim-bin-') && d !== OLD_FIXED_DIR);
    // Its own directory names the process that made it.
    const [own] = await simBin();
    const ownStat = (await readFile('/proc/self/stat', 'utf8')).trim();
    const startTime = ownStat.slice(ownStat.lastIndexOf(')') + 2).split(' ')[19];
    expect(await readFile(join(tmp, own!, 'owner'), 'utf8')).toBe(`${process.pid} ${startTime}\n`);
    // A process that is gone (no such pid), one whose pid now belongs to
    // another process (this one, started at another time), and a live one.
    const plant = async (name: string, owner: string) => {
      await mkdir(join(tmp, name, 'guest'), { recursive: true });
      await writeFile(join(tmp, name, 'owner'), `${owner}\n`);
    };
    await plant('labvirt-sim-bin-gone01', '2147483646 12345');
    await plant('labvirt-sim-bin-reused', `${process.pid} 1`);
    await plant('labvirt-sim-bin-alive1', `${process.pid} ${startTime}`);
    // The next directory made (here: after a tmp cleaner took the current one) sweeps.
    await rm(join(tmp, own!), { recursive: true, force: true });
    const c = await newGuestLogin();
    expect((await fixtures.run(c, 'sudo -u student sh -c \'echo "$USER"\'')).stdout).toBe(
      'student\n',
    );
    const left = await simBin();
    expect(left).toContain('labvirt-sim-bin-alive1');
    expect(left).not.toContain('labvirt-sim-bin-gone01');
    expect(left).not.toContain('labvirt-sim-bin-reused');
    expect(left).toHaveLength(2);
    // Not made by a sim (no owner file): left alone.
    expect(existsSync(join(tmp, OLD_FIXED_DIR, 'sudo'))).toBe(true);
    await rm(join(tmp, 'labvirt-sim-bin-alive1'), { recursive: true, force: true });
  });
});
