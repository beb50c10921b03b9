/**
 * What every bench shares: percentiles, waiting, CPU of a child process, and
 * the result rows that `bench/run.ts` collects into one table.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../src/net/ports.js';

export { freePort };

export const ROOT = join(import.meta.dirname, '..');
export const LABVIRT_BIN = join(ROOT, 'bin', 'labvirt.js');
export const FIXTURE_LABS = join(ROOT, 'test', 'fixtures', 'labs');

/** One figure for the summary table; `met` is undefined when the figure has no target. */
export interface ResultRow {
  what: string;
  figure: string;
  target?: string;
  met?: boolean;
}

/**
 * Prints the row and, when run under `bench/run.ts` (BENCH_RESULTS names a
 * file), appends it as one JSON line for the table.
 */
export function result(row: ResultRow): void {
  const mark = row.met === undefined ? '' : row.met ? ' [met]' : ' [NOT met]';
  console.log(`= ${row.what}: ${row.figure}${row.target ? ` (target ${row.target})` : ''}${mark}`);
  const file = process.env.BENCH_RESULTS;
  if (file) appendFileSync(file, JSON.stringify(row) + '\n');
}

/** Seconds since `start` (a `Date.now()`), to one decimal, for a bench's lines. */
export function secondsSince(start: number): string {
  return ((Date.now() - start) / 1000).toFixed(1);
}

export function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

export async function waitFor(
  fn: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** CPU time (user + system) a process has used so far, in ms, from /proc (Linux). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/**
 * CPU of a process and everything under it, in ms, from /proc (Linux): each
 * live descendant's own time plus what its finished children used (the
 * simulator's guest commands run under its spawner helper and end quickly).
 */
export function processTreeCpuMs(pid: number): number {
  const parents = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parents.set(Number(entry), Number(fields[1]));
    // utime, stime, cutime, cstime
    ticks.set(
      Number(entry),
      fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0),
    );
  }
  const inTree = (p: number): boolean => {
    for (let at = p, hops = 0; at > 1 && hops < 64; at = parents.get(at) ?? 0, hops++)
      if (at === pid) return true;
    return false;
  };
  let total = 0;
  for (const [p, t] of ticks) if (inTree(p)) total += t;
  return (total * 1000) / 100; // USER_HZ is 100 on Linux
}

/** Resident memory of a process in MiB, from /proc (Linux). */
export function processRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** The whole machine's busy and total CPU time so far, in ms (all cores; /proc/stat). */
export function machineCpuMs(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1);
  const ticks = fields.map(Number);
  // user nice system idle iowait irq softirq steal (guest time is inside user)
  const total = ticks.slice(0, 8).reduce((sum, t) => sum + t, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: ((total - idle) * 1000) / 100, total: (total * 1000) / 100 };
}

/** The share of all cores that was busy between two `machineCpuMs` readings (0–1). */
export function busyShare(
  from: { busy: number; total: number },
  to: { busy: number; total: number },
): number {
  return to.total > from.total ? (to.busy - from.busy) / (to.total - from.total) : 0;
}

/**
 * Waits until the machine is quiet: a whole second in which at most
 * `maxShare` of all cores was busy, or `maxMs` has passed. Resolves with
 * whether it got quiet, how long it waited and the last second's busy share,
 * for the report: a bench
 * that measures one request at a time must not measure the tail of its own
 * set-up (a fill boots hundreds of processes) instead of the request.
 */
export async function waitQuiet(
  maxShare: number,
  maxMs: number,
): Promise<{ quiet: boolean; waitedMs: number; share: number }> {
  const start = Date.now();
  for (;;) {
    const before = machineCpuMs();
    await new Promise((r) => setTimeout(r, 1000));
    const share = busyShare(before, machineCpuMs());
    const quiet = share <= maxShare;
    if (quiet || Date.now() - start >= maxMs) return { quiet, waitedMs: Date.now() - start, share };
  }
}

/** The 1-minute load average and core count, for the report. */
export function machineLoad(): string {
  const [one, five] = readFileSync('/proc/loadavg', 'utf8').split(' ');
  return `load average ${one} (1 min), ${five} (5 min)`;
}

/**
 * Stops a child process and resolves once it has exited: `signal` first
 * (its graceful stop), SIGKILL when it is still there after `graceMs`. A
 * bench's teardown is bounded this way: a child that does not stop in time
 * costs the grace, never the rest of a run.
 */
export function stopChild(
  child: ChildProcess,
  graceMs: number,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

export interface ChildHandle {
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Runs `labvirt <args>` in its own process, output collected. bin/labvirt.js
 * runs the build in dist/ when it is newer than every source file (as
 * installed) and the sources through tsx otherwise, so a bench never runs
 * stale code; BENCH_FROM_SOURCE=1 forces the sources.
 */
export function forkLabvirt(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  execArgv: string[] = [],
): ChildHandle {
  const child = fork(LABVIRT_BIN, args, {
    env: {
      ...process.env,
      LABVIRT_FROM_SOURCE: process.env.BENCH_FROM_SOURCE === '1' ? '1' : '',
      ...env,
    },
    execArgv,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return {
    child,
    output: () => out,
    stop: () => stopChild(child, 20_000),
  };
}

/**
 * Writes a `labvirt serve` configuration for a bench into `file`: the given
 * labs and flavors on the simulator's cluster, Redis, keys under `dir`, the
 * SSH gateway and the API on loopback. Returns the API's port.
 */
export async function writeServeConfig(opts: {
  file: string;
  dir: string;
  labsDir: string;
  sim: { kubeconfig: string; guestMap: string };
  redisUrl: string;
  redisPrefix: string;
  flavors: Record<string, unknown>;
  pool: Record<string, unknown>;
  logLevels?: Record<string, string>;
}): Promise<number> {
  const apiPort = await freePort();
  writeFileSync(
    opts.file,
    JSON.stringify({
      labsDir: opts.labsDir,
      labScripts: 'sim',
      logLevel: 'warn',
      ...(opts.logLevels ? { logLevels: opts.logLevels } : {}),
      kube: { kubeconfig: opts.sim.kubeconfig, guestAddressMap: opts.sim.guestMap },
      redis: { url: opts.redisUrl, prefix: opts.redisPrefix },
      flavors: opts.flavors,
      pool: opts.pool,
      ssh: {
        hostKey: join(opts.dir, 'hk'),
        orchestratorKey: join(opts.dir, 'ok'),
        gatewayPort: 0,
        bindAddress: '127.0.0.1',
      },
      api: { host: '127.0.0.1', port: apiPort },
      // BENCH_SYNC=0: no NodePort sync; BENCH_API_TLS=labvirt: its TLS in labvirt's process.
      ...(process.env.BENCH_SYNC === '0' || process.env.BENCH_API_TLS
        ? {
            sync: {
              enabled: process.env.BENCH_SYNC !== '0',
              ...(process.env.BENCH_API_TLS ? { apiTls: process.env.BENCH_API_TLS } : {}),
            },
          }
        : {}),
    }),
  );
  return apiPort;
}

/** Starts `labvirt sim` in its own process; resolves with its directory's files once it serves. */
export async function forkSim(
  dir: string,
  opts: { speed: number; nodes: number; guestIdleStopSeconds?: number; execArgv?: string[] },
): Promise<ChildHandle & { kubeconfig: string; guestMap: string }> {
  const handle = forkLabvirt(
    [
      'sim',
      '--dir',
      dir,
      '--speed',
      String(opts.speed),
      '--nodes',
      String(opts.nodes),
      ...(opts.guestIdleStopSeconds
        ? ['--guest-idle-stop', String(opts.guestIdleStopSeconds)]
        : []),
    ],
    {},
    opts.execArgv ?? [],
  );
  await waitFor(
    async () => {
      if (handle.child.exitCode !== null) throw new Error(`sim exited: ${handle.output()}`);
      return /Ctrl-C stops it/.test(handle.output());
    },
    60_000,
    'simulator start',
  );
  return { ...handle, kubeconfig: join(dir, 'kubeconfig'), guestMap: join(dir, 'guests.json') };
}

export interface StepLine {
  sessionId: string;
  envId: string;
  queueMs: number;
  claimToReadyMs: number;
  steps: Record<string, number>;
}

/** serve's "session active" lines (orchestrator at info), by session. */
export function stepLines(output: string): Map<string, StepLine> {
  const lines = new Map<string, StepLine>();
  for (const line of output.split('\n')) {
    if (!line.includes('"session active"')) continue;
    try {
      const o = JSON.parse(line) as StepLine;
      if (o.steps) lines.set(o.sessionId, o);
    } catch {
      /* not a whole JSON line */
    }
  }
  return lines;
}

/**
 * How much longer a claim took for the lab's own scripts, from its steps:
 * without them, the stretch they share with the key installs and the tools
 * inventory would last as long as those alone — the inventory beside the
 * key installs (lap scriptsKeysTools) or, before 2026-12-06's tenth pass,
 * after them (laps scriptsAndKeys, tools). undefined when the steps do not say.
 */
export function scriptsAddedMs(steps: Record<string, number>): number | undefined {
  const { keys, tools, scriptsKeysTools, scriptsAndKeys } = steps;
  if (keys === undefined || tools === undefined) return undefined;
  if (scriptsKeysTools !== undefined) return scriptsKeysTools - Math.max(keys, tools);
  if (scriptsAndKeys !== undefined) return scriptsAndKeys - keys;
  return undefined;
}

/** Each prepare step's median and highest over the claims: where a claim's time goes. */
export function printSteps(prefix: string, lines: Map<string, StepLine>): void {
  const names = [...new Set([...lines.values()].flatMap((l) => Object.keys(l.steps)))];
  const per = (f: (l: StepLine) => number | undefined) =>
    [...lines.values()].map(f).filter((v): v is number => v !== undefined && !isNaN(v));
  const stat = (values: number[]) =>
    values.length
      ? `p50 ${pct(values, 50)} p99 ${pct(values, 99)} max ${Math.max(...values)}`
      : 'none';
  console.log(`${prefix}: prepare steps (ms over ${lines.size} claims):`);
  console.log(`  queue (claim → prepare job starts): ${stat(per((l) => l.queueMs))}`);
  for (const name of names) console.log(`  ${name}: ${stat(per((l) => l.steps[name]))}`);
}
