/**
 * One student at a time (`npx tsx bench/pool.bench.ts --single N`): what a
 * student claiming a warm env waits for, with `labvirt serve`, the simulator
 * and this client in three processes (burst.ts's setup), claims through the
 * HTTP API and the student's own wait: a long poll on
 * `GET /v1/sessions/:id?after=…`, as `labvirt start` does.
 *
 * Warm arm: N warm 3-VM envs, then N students one after another (each starts
 * when the previous one's session is active). Cold arm, in the same run:
 * BENCH_COLD_STUDENTS (default 3) students at once on an empty pool
 * (`minWarm` 0) with the simulator at BENCH_COLD_SPEED (default 1: real
 * boot times), so cold ÷ warm is a ratio from one run. The warm arm's
 * simulator speed (BENCH_SPEED, default 20) changes only how fast its pool
 * fills: a warm claim waits for no boot.
 *
 * Where a claim's time goes comes from serve's own log: the "session active"
 * line (orchestrator at info) carries each prepare step's duration, and the
 * executor's "guest connected" lines (executor at debug) each SSH connection's.
 */
import { cpus } from 'node:os';
import { sessionProgress } from '../src/api/progress.js';
import type { SessionView } from '../src/sessions/types.js';
import { startServeStack, type ServeStack } from './burst.js';
import {
  busyShare,
  machineCpuMs,
  machineLoad,
  pct,
  processCpuMs,
  processTreeCpuMs,
  result,
  scriptsAddedMs,
  printSteps,
  stepLines,
  waitFor,
  waitQuiet,
} from './lib.js';

const LAB = 'fixture-three';
const PROF_DIR = process.env.BENCH_CPU_PROF;

export interface SingleOptions {
  students: number;
  warmSpeed: number;
  coldStudents: number;
  coldSpeed: number;
}

interface Claim {
  sessionId: string;
  /** POST sent → the long poll answers `active`, as the student's client sees it. */
  clientMs: number;
  /** The session's own createdAt → readyAt (labvirt's record). */
  recordedMs: number;
  /** POST sent → the session's createdAt (same machine, same clock). */
  beforeRecordMs: number;
  /** The session's readyAt → the client sees `active`. */
  afterReadyMs: number;
  state: string;
}

/** Starts a lab through the API and waits as `labvirt start` does: long polls until active or ended. */
async function claim(stack: ServeStack, student: string, timeoutMs: number): Promise<Claim> {
  const sent = Date.now();
  const t0 = performance.now();
  let view = await stack.api<SessionView>('/sessions', {
    method: 'POST',
    body: JSON.stringify({ student, labId: LAB }),
  });
  const deadline = Date.now() + timeoutMs;
  while (view.state !== 'active' && view.state !== 'ended') {
    if (Date.now() > deadline) break;
    const q = new URLSearchParams({ after: sessionProgress(view), waitSeconds: '30' });
    view = await stack.api<SessionView>(`/sessions/${encodeURIComponent(view.id)}?${q}`);
  }
  const clientMs = performance.now() - t0;
  const seen = Date.now();
  const record = await stack.store.getSession(view.id);
  return {
    sessionId: view.id,
    clientMs: Math.round(clientMs),
    recordedMs: record?.readyAt ? record.readyAt - record.createdAt : NaN,
    beforeRecordMs: record ? record.createdAt - sent : NaN,
    afterReadyMs: record?.readyAt ? seen - record.readyAt : NaN,
    state: view.state,
  };
}

/** serve's "guest connected" lines (executor at debug): each connection's time, by env. */
function connectTimes(output: string): Map<string, number[]> {
  const byEnv = new Map<string, number[]>();
  for (const line of output.split('\n')) {
    if (!line.includes('"guest connected"')) continue;
    try {
      const o = JSON.parse(line) as { envId: string; connectMs: number };
      byEnv.set(o.envId, [...(byEnv.get(o.envId) ?? []), o.connectMs]);
    } catch {
      /* not a whole JSON line */
    }
  }
  return byEnv;
}

const summary = (values: number[]) =>
  `p50 ${pct(values, 50)} ms, p95 ${pct(values, 95)} ms, p99 ${pct(values, 99)} ms, max ${Math.max(...values)} ms`;

/** At most this share of all cores busy counts as a quiet machine (see waitQuiet). */
const QUIET_SHARE = 0.15;
/** How long to wait for it at most (the smoke run, whose benches run two at a time, sets 0). */
const QUIET_MAX_MS = (() => {
  const seconds = Number(process.env.BENCH_QUIET_MAX_S ?? 90);
  if (!Number.isFinite(seconds) || seconds < 0)
    throw new Error(
      `BENCH_QUIET_MAX_S must be a number of seconds (got ${process.env.BENCH_QUIET_MAX_S})`,
    );
  return seconds * 1000;
})();

async function warmArm(opts: SingleOptions): Promise<{ claims: Claim[]; noScripts: number[] }> {
  const n = opts.students;
  const stack = await startServeStack({
    speed: opts.warmSpeed,
    minWarm: n,
    // No room to replenish: each claim is measured alone, not beside the
    // boot of its replacement.
    maxTotal: n,
    logLevels: { orchestrator: 'info', executor: 'debug' },
    // BENCH_CPU_PROF=<dir>: V8 CPU profiles of serve and the simulator (the claims' window is printed).
    ...(PROF_DIR
      ? {
          serveExecArgv: ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`],
          // The simulator's own profile beside serve's (its pid in the file name).
          simExecArgv: ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`],
          pool: { shutdownGraceSeconds: 5 },
        }
      : {}),
  });
  try {
    const fillStart = Date.now();
    await stack.waitWarm(n, 20 * 60_000);
    console.log(
      `single: ${n} warm 3-VM envs filled in ${((Date.now() - fillStart) / 1000).toFixed(1)} s (simulator speed ${opts.warmSpeed})`,
    );
    // Let the fill's last work settle before measuring: a student claims from
    // a pool filled earlier, not beside the boot of 3n guests. The load
    // average lags by a minute; the busy share says what the cores did.
    await new Promise((r) => setTimeout(r, 2000));
    const quiet = await waitQuiet(QUIET_SHARE, QUIET_MAX_MS);
    const busyPct = `${(quiet.share * 100).toFixed(0)}% busy`;
    const waited = `${(quiet.waitedMs / 1000).toFixed(0)} s after the fill settled`;
    console.log(
      quiet.quiet
        ? `single: the machine quiet (≤ ${QUIET_SHARE * 100}% of all cores busy for a second) ${waited}; last second ${busyPct}`
        : `single: the machine still busy ${waited} (last second ${busyPct}, quiet is ≤ ${QUIET_SHARE * 100}%); measuring anyway`,
    );
    const loadBefore = machineLoad();
    const machine0 = machineCpuMs();
    // The fill's own connections are in the log too: only the claims' count.
    const logFrom = stack.serve.output().length;
    const cpu0 = processCpuMs(stack.serve.child.pid!);
    const simCpu0 = processCpuMs(stack.sim.child.pid!);
    const guests0 = processTreeCpuMs(stack.sim.child.pid!) - simCpu0;
    const t0 = Date.now();
    const claims: Claim[] = [];
    for (let i = 0; i < n; i++) claims.push(await claim(stack, `student${i}`, 120_000));
    const wallMs = Date.now() - t0;
    const machineBusy = busyShare(machine0, machineCpuMs());
    if (PROF_DIR) console.log(`single: claims from ${t0} to ${Date.now()} (epoch ms)`);
    console.log(`single: each claim in order (ms): ${claims.map((c) => c.clientMs).join(' ')}`);
    const cpuMs = processCpuMs(stack.serve.child.pid!) - cpu0;
    const simCpuMs = processCpuMs(stack.sim.child.pid!) - simCpu0;
    const guestsMs =
      processTreeCpuMs(stack.sim.child.pid!) - processCpuMs(stack.sim.child.pid!) - guests0;
    // The last claim's log line may still be on its way.
    await waitFor(
      async () => stepLines(stack.serve.output()).size >= claims.length,
      5000,
      'the step log lines',
    ).catch(() => undefined);
    const lines = stepLines(stack.serve.output());
    const connects = connectTimes(stack.serve.output().slice(logFrom));
    const notActive = claims.filter((c) => c.state !== 'active').length;
    console.log(
      `single: ${n} students one after another in ${(wallMs / 1000).toFixed(1)} s; ${notActive} not active; ${loadBefore} before, ${machineLoad()} after`,
    );
    console.log(
      `single: CPU per claim: labvirt ${(cpuMs / n).toFixed(1)} ms, simulator ${(simCpuMs / n).toFixed(1)} ms, the simulated guests' commands ${(guestsMs / n).toFixed(1)} ms (${cpus().length} cores)`,
    );
    // What else ran: the claims' own processes against the whole machine.
    const ours = (cpuMs + simCpuMs + guestsMs) / (wallMs * cpus().length);
    console.log(
      `single: during the claims ${(machineBusy * 100).toFixed(0)}% of all cores were busy, ${(ours * 100).toFixed(0)}% with labvirt, the simulator and its guests`,
    );
    printSteps('single', lines);
    const stat = (values: number[]) =>
      values.length ? `p50 ${pct(values, 50)} max ${Math.max(...values)}` : 'none';
    console.log(
      `  POST sent → session recorded: ${stat(claims.map((c) => c.beforeRecordMs))}; readyAt → the student's long poll answers: ${stat(claims.map((c) => c.afterReadyMs))}`,
    );
    const connectMs = [...lines.values()].flatMap((l) => connects.get(l.envId) ?? []);
    console.log(
      `  SSH connects (${(connectMs.length / Math.max(1, lines.size)).toFixed(1)} per claim, each inside the key installs and the lab's scripts): ${stat(connectMs)}`,
    );
    // Without the lab's own scripts (scriptsAddedMs).
    const noScripts = claims.flatMap((c) => {
      const st = lines.get(c.sessionId)?.steps;
      const scripts = st && scriptsAddedMs(st);
      return scripts === undefined ? [] : [c.clientMs - scripts];
    });
    return { claims, noScripts };
  } finally {
    // serve first, and its time then: profile-summary aligns serve's profile
    // to it. After the whole stack (the simulator and its guests stopping
    // too) it was 14 s late, and the claims' window held the fill.
    await stack.serve.stop();
    if (PROF_DIR) console.log(`single: serve stopped at ${Date.now()} (epoch ms)`);
    await stack.stop();
  }
}

async function coldArm(opts: SingleOptions): Promise<Claim[]> {
  const n = opts.coldStudents;
  const stack = await startServeStack({
    speed: opts.coldSpeed,
    minWarm: 0,
    maxTotal: n,
    logLevels: { orchestrator: 'info' },
  });
  try {
    // serve's own first replenish runs as it starts: a claim within a second
    // of it is deduplicated against it (addMaintenance's 1 s window) and, if
    // that run read the waiting line before this claim joined it, waits for
    // the next replenish tick (a minute). Measured once here (65 s for a
    // 6 s cold claim); what a class arriving at a fresh start would see, but
    // not the cold path this arm measures.
    await new Promise((r) => setTimeout(r, 2000));
    const loadBefore = machineLoad();
    const claims = await Promise.all(
      Array.from({ length: n }, (_, i) => claim(stack, `cold${i}`, 15 * 60_000)),
    );
    console.log(
      `single: cold arm (simulator speed ${opts.coldSpeed}, ${n} students at once on an empty pool): ${claims.filter((c) => c.state !== 'active').length} not active; ${loadBefore} before, ${machineLoad()} after`,
    );
    return claims;
  } finally {
    await stack.stop();
  }
}

export async function runSingle(opts: SingleOptions): Promise<void> {
  const warm = await warmArm(opts);
  const cold = opts.coldStudents > 0 ? await coldArm(opts) : [];
  const active = warm.claims.filter((c) => c.state === 'active');
  const client = active.map((c) => c.clientMs);
  const recorded = active.map((c) => c.recordedMs);
  if (client.length === 0) client.push(NaN);
  console.log(
    `single: warm claim-to-ready as the student sees it (POST → active): ${summary(client)}`,
  );
  console.log(
    `single: warm claim-to-ready, the session's createdAt → readyAt: ${summary(recorded)}`,
  );
  if (warm.noScripts.length)
    console.log(
      `single: warm, without the lab's own scripts (POST → active less what the setup added): ${summary(warm.noScripts)}`,
    );
  const lost = opts.students - active.length;
  result({
    what: `single warm claim, 3-VM env, ${opts.students} students one after another, POST → active through the API`,
    figure: `p99 ${pct(client, 99)} ms (p50 ${pct(client, 50)} ms, max ${Math.max(...client)} ms), ${lost} not active`,
    target: 'p99 ≤ 300 ms',
    met: pct(client, 99) <= 300 && lost === 0,
  });
  if (warm.noScripts.length)
    result({
      what: "single warm claim without the lab's own scripts (orchestrator time)",
      figure: `p99 ${pct(warm.noScripts, 99)} ms (p50 ${pct(warm.noScripts, 50)} ms)`,
    });
  if (cold.length) {
    const coldActive = cold.filter((c) => c.state === 'active').map((c) => c.clientMs);
    if (coldActive.length === 0) coldActive.push(NaN);
    console.log(
      `single: cold claim-to-ready (speed ${opts.coldSpeed}, POST → active): ${summary(coldActive)}`,
    );
    const ratio = pct(coldActive, 50) / pct(client, 50);
    result({
      what: `cold ÷ warm claim-to-ready, same run, cold at simulator speed ${opts.coldSpeed} (${cold.length} cold, ${opts.students} warm one at a time)`,
      figure: `p50 ${ratio.toFixed(0)}× (cold p50 ${pct(coldActive, 50)} ms, warm p50 ${pct(client, 50)} ms)`,
      target: '≥ 50×',
      met: ratio >= 50,
    });
  }
}
