import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HELPER_SOURCE, startSpawner, type SpawnedCommand } from '../../src/sim/guest/spawner.js';

const spawner = startSpawner();
afterAll(() => spawner.stop());

function collect(
  command: SpawnedCommand,
  stdin = '',
): Promise<{ out: string; err: string; code: number | null; signal: string | null }> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    command.stdout!.on('data', (d: Buffer) => out.push(d));
    command.stderr!.on('data', (d: Buffer) => err.push(d));
    command.on('close', (code: number | null, signal: string | null) =>
      resolve({
        out: Buffer.concat(out).toString(),
        err: Buffer.concat(err).toString(),
        code,
        signal,
      }),
    );
    // A command that exits before reading its input (most here) has closed
    // the other end: even an empty write then fails with EPIPE, which the
    // guest's server ignores the same way.
    command.stdin!.on('error', () => undefined);
    command.stdin!.end(stdin);
  });
}

const opts = { cwd: '/tmp', env: { PATH: '/usr/bin:/bin' } };

describe('the sim guests’ spawner', () => {
  it('starts commands from its own process, not the simulator’s', async () => {
    const r = await collect(await spawner.spawn('/bin/sh', ['-c', 'echo $PPID'], opts));
    expect(Number(r.out.trim())).not.toBe(process.pid);
    expect(r.code).toBe(0);
  });

  it('loses no byte written at once, passes stdin, keeps stderr apart, and reports the exit code', async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, async (_, i) =>
        collect(
          await spawner.spawn(
            '/bin/sh',
            ['-c', `echo first${i}; cat; echo oops >&2; head -c 300000 /dev/zero; exit ${i % 4}`],
            opts,
          ),
          `in${i}\n`,
        ),
      ),
    );
    results.forEach((r, i) => {
      expect(r.out.startsWith(`first${i}\nin${i}\n`)).toBe(true);
      expect(r.out.length).toBe(`first${i}\nin${i}\n`.length + 300_000);
      expect(r.err).toBe('oops\n');
      expect(r.code).toBe(i % 4);
    });
  });

  it('serves many commands that exit at once, before their pipes reach the simulator', async () => {
    const codes = await Promise.all(
      Array.from(
        { length: 20 },
        async (_, i) =>
          (await collect(await spawner.spawn('/bin/sh', ['-c', `exit ${i % 3}`], opts))).code,
      ),
    );
    expect(codes).toEqual(Array.from({ length: 20 }, (_, i) => i % 3));
  });

  it('signals the whole process group', async () => {
    // Signalled only once both children exist. dash blocks every signal
    // around the vfork of a foreground command, and a child starts with no
    // pending signal: a group signal sent in that window ends the shell but
    // not the child it is making. Killing `sleep 30 & sleep 30` at once left
    // the second sleep holding the output for 30 s, once on CI (1 in 1,500
    // kills at random points of dash's start here).
    const command = await spawner.spawn(
      '/bin/sh',
      ['-c', 'sleep 300 & sleep 300 & echo started; wait; echo never'],
      opts,
    );
    const done = collect(command);
    await new Promise((resolve) => command.stdout!.once('data', resolve));
    command.killGroup('SIGTERM');
    // Both sleeps hold the output: it closes only once every process of the group is gone.
    const r = await done;
    expect(r.out).toBe('started\n');
    expect(r.signal).toBe('SIGTERM');
  });

  it('reports a command that cannot start', async () => {
    await expect(spawner.spawn('/no/such/program', [], opts)).rejects.toThrow(/ENOENT/);
  });

  it('stops quietly while the commands it was told to kill are still exiting (no EPIPE)', async () => {
    // The helper's stderr (normally the simulator's own) goes to a file here;
    // a shell around it notes when it exited.
    const dir = await mkdtemp(join(tmpdir(), 'labvirt-spawner-'));
    const errors = join(dir, 'helper.err');
    try {
      const own = startSpawner(() => ({
        file: '/bin/sh',
        args: [
          '-c',
          '"$0" -e "$1" 2>"$2"; echo $? >"$2.exit"',
          process.execPath,
          HELPER_SOURCE,
          errors,
        ],
        env: { ...(process.env as Record<string, string>), NODE_OPTIONS: '' },
      }));
      const commands = await Promise.all(
        Array.from({ length: 40 }, () => own.spawn('/bin/sh', ['-c', 'sleep 30'], opts)),
      );
      // What a guest's stop does: kill every command, then let the helper go at once.
      for (const c of commands) c.killGroup('SIGKILL');
      own.stop();
      await expect
        .poll(() => existsSync(`${errors}.exit`), { timeout: 20_000, interval: 50 })
        .toBe(true);
      expect(await readFile(errors, 'utf8')).toBe('');
      expect((await readFile(`${errors}.exit`, 'utf8')).trim()).toBe('0');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('starts no helper again once stopped: late commands, connects and listens are refused', async () => {
    let launches = 0;
    const own = startSpawner(() => {
      launches++;
      return {
        file: process.execPath,
        args: ['-e', HELPER_SOURCE],
        env: { ...(process.env as Record<string, string>), NODE_OPTIONS: '' },
      };
    });
    const first = await own.spawn('/bin/sh', ['-c', 'true'], opts);
    await new Promise((r) => first.once('close', r));
    expect(launches).toBe(1);
    await own.stop();
    // What came after a guest stopped: a command, a connection, a port to
    // publish. Before, each started a helper (a sandboxed one's bwrap makes
    // mount points in the guest's root while the simulator removes it).
    await expect(own.spawn('/bin/sh', ['-c', 'true'], opts)).rejects.toThrow(/stopped/);
    await expect(own.connect('127.0.0.1', 1)).rejects.toThrow(/stopped/);
    own.listen('127.0.0.1', 0, () => undefined);
    expect(launches).toBe(1);
  });
});
