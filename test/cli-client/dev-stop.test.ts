import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { devArgs, fixtureDevConfig, spawnLabvirt } from '../helpers/cli-env.js';

/** Pids of processes whose command line mentions `needle` (a dev stack's own directory). */
function processesWith(needle: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (cmdline.includes(needle)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Pids of `parent`'s children named `comm` (redis-server rewrites its command line). */
function childrenNamed(parent: number, comm: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const own = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (own === comm && ppid === parent) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** A process's group id (the 5th field of /proc/<pid>/stat, after the parenthesised name). */
function groupOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface Dev {
  child: ChildProcess;
  dir: string;
  output: () => string;
  exited: Promise<number | null>;
  /** The private redis-server's pid. */
  redisPid: number;
}

const started: Dev[] = [];

/**
 * `labvirt dev` in a process group of its own, as a shell starts a command
 * in a terminal: a Ctrl-C there signals the whole group.
 */
async function startDev(graceSeconds: number): Promise<Dev> {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-dev-stop-'));
  const configFile = join(dir, 'labvirt.yaml');
  writeFileSync(
    configFile,
    stringify(fixtureDevConfig(2, { pool: { shutdownGraceSeconds: graceSeconds } })),
  );
  let output = '';
  const child = spawnLabvirt(devArgs(configFile, join(dir, 'stack')), {
    detached: true,
    onOutput: (text) => (output += text),
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const dev: Dev = { child, dir, output: () => output, exited, redisPid: 0 };
  started.push(dev);
  const deadline = Date.now() + 150_000;
  while (!/labvirt dev: running/.test(output)) {
    if (child.exitCode !== null) throw new Error(`labvirt dev exited early:\n${output}`);
    if (Date.now() > deadline) throw new Error(`labvirt dev not ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const redis = childrenNamed(child.pid!, 'redis-server');
  expect(redis, 'one private redis-server').toHaveLength(1);
  dev.redisPid = redis[0]!;
  return dev;
}

/** Resolves with the exit code, or fails naming what the stack said. */
async function exitWithin(dev: Dev, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`labvirt dev still running after ${ms} ms:\n${dev.output()}`)),
      ms,
    );
  });
  try {
    return await Promise.race([dev.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

afterEach(async () => {
  for (const dev of started.splice(0)) {
    if (dev.child.exitCode === null && dev.child.signalCode === null) {
      try {
        process.kill(-dev.child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await dev.exited;
    }
    rmSync(dev.dir, { recursive: true, force: true });
  }
});

describe('stopping `labvirt dev`', { timeout: 240_000 }, () => {
  it('Ctrl-C in its terminal (SIGINT to the whole group) stops the stack, Redis last, and exits 0', async () => {
    const dev = await startDev(30);
    // The terminal signals every process of the foreground group at once;
    // Redis is in a group of its own, so labvirt stops it when done with it.
    expect(groupOf(dev.child.pid!)).toBe(dev.child.pid);
    expect(groupOf(dev.redisPid), 'Redis in labvirt’s process group').not.toBe(dev.child.pid);
    process.kill(-dev.child.pid!, 'SIGINT');
    expect(await exitWithin(dev, 60_000), dev.output()).toBe(0);
    expect(dev.output()).toMatch(/labvirt dev: stopping/);
    expect(alive(dev.redisPid), 'Redis left running').toBe(false);
    expect(processesWith(dev.dir), 'processes of the stack left running').toEqual([]);
  });

  it('exits after the grace period when Redis went first, instead of hanging on what is left', async () => {
    const dev = await startDev(2);
    process.kill(dev.redisPid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    dev.child.kill('SIGTERM');
    // The grace period (2 s), the stop's own waits; it used to stay up for good.
    expect(await exitWithin(dev, 45_000), dev.output()).toBe(0);
    expect(processesWith(dev.dir)).toEqual([]);
  });

  it('quits at once on a second Ctrl-C while the first is still waiting', async () => {
    const dev = await startDev(300);
    process.kill(dev.redisPid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    dev.child.kill('SIGINT');
    const deadline = Date.now() + 30_000;
    while (!/labvirt dev: stopping/.test(dev.output()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    dev.child.kill('SIGINT');
    expect(await exitWithin(dev, 15_000), dev.output()).toBe(130);
    expect(dev.output()).toMatch(/SIGINT again: quitting without waiting/);
    await expect.poll(() => processesWith(dev.dir)).toEqual([]);
  });
});
