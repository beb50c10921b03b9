/**
 * Pool benchmark (run: `npx tsx bench/pool.bench.ts [--burst N]`): real redis-server, the
 * simulated KubeVirt cluster (same boot delays for both arms), labvirt's real
 * workers. Prints, in one run:
 *  - claim-to-ready latency from a warm pool vs. cold provisioning (p50/p95/p99
 *    and their ratio — ratios, not absolute times, are what compare across
 *    machines);
 *  - Kubernetes API requests per environment lifecycle (provision → claim →
 *    release → deleted), and the writes of one that waits warm in the pool;
 *  - the RSS and CPU of `labvirt serve` (dist/, its own process) holding
 *    warm envs, and its RSS with none (`--hold` runs only this; see holdEnvs).
 * Environment: BENCH_SESSIONS (default 20), BENCH_HOLD_ENVS (default 300),
 * BENCH_SPEED (simulator speed factor, default 20). Envs are of the 3-VM
 * flavor (BENCH_NODES=1 for the 1-VM one). The hold's simulator stops idle
 * guests' helper processes after BENCH_GUEST_IDLE_STOP_SECONDS (default 10;
 * 0 keeps them): 1,000 warm 3-VM envs are 3,000 guests, whose helpers
 * (≈ 7 MiB each) would not fit beside serve on this machine.
 * `--burst N` instead measures N students claiming warm envs at once with the
 * simulator and `labvirt serve` in their own processes (see burst.ts; with
 * `--replicas R`, R serve processes; with `--line K`, K of the students wait
 * in line for envs made during the burst);
 * `--single N`, N students claiming warm envs one after another and a cold
 * arm at real boot speed in the same run (see single.ts).
 */
import { mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { distIsCurrent } from '../bin/dist-is-current.js';
import { startDevStack } from '../src/app/dev.js';
import { startRedisServer } from '../src/redis/index.js';
import { HELPER_SOURCE } from '../src/sim/guest/spawner.js';
import { runBurst } from './burst.js';
import { runSingle } from './single.js';
import {
  FIXTURE_LABS,
  forkLabvirt,
  forkSim,
  machineLoad,
  pct,
  processCpuMs,
  processRssMiB,
  result,
  secondsSince,
  waitFor,
  writeServeConfig,
} from './lib.js';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);
const HOLD = Number(process.env.BENCH_HOLD_ENVS ?? 300);
const SPEED = Number(process.env.BENCH_SPEED ?? 20);
const NODES = Number(process.env.BENCH_NODES ?? 3);
/**
 * BENCH_HOLD_HEAP_SNAPSHOT=<dir>: serve's heap snapshot after each step's
 * window, as <dir>/serve.<envs>.heapsnapshot (compare two with
 * bench/sync-heap-diff.ts). Taking one stops serve and grows its heap: the
 * RSS of the steps after it is not comparable with a run without.
 */
const HEAP_DIR = process.env.BENCH_HOLD_HEAP_SNAPSHOT;
/** BENCH_SERVE_EXEC_ARGV: Node flags for the hold's serve (e.g. `--max-semi-space-size=1`), space-separated. */
const SERVE_EXEC_ARGV = (process.env.BENCH_SERVE_EXEC_ARGV ?? '').split(' ').filter(Boolean);
const GUEST_IDLE_STOP_SECONDS = Number(process.env.BENCH_GUEST_IDLE_STOP_SECONDS ?? 10);
const LABS = FIXTURE_LABS;
const FLAVOR = `v1.30-${NODES}node`;
const OTHER_FLAVOR = NODES === 3 ? 'v1.30-1node' : 'v1.30-3node';
const LAB = NODES === 3 ? 'fixture-three' : 'fixture-one';
const burstArg = process.argv.indexOf('--burst');
const REDIS_PREFIX = 'labvirt';

async function claimLatencies(minWarm: number): Promise<{
  latencies: number[];
  requestsPerEnv: number;
  writesPerEnv: number;
  /** Writes that made each warm env, from provisioning to its `warm` label (0 without a warm pool). */
  fillWritesPerEnv: number;
  pollingReads: number;
  breakdown: string;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-'));
  let requests = 0;
  const isWrite = (call: string) => /^(create|patch|delete|update) /.test(call);
  const stack = await startDevStack({
    dir,
    sim: { speed: SPEED },
    roles: { api: false, gateway: false, scheduler: false },
    overrides: {
      labsDir: LABS,
      flavors: {
        [FLAVOR]: {
          kubernetesVersion: '1.30',
          nodes: NODES,
          minWarm,
          // Warm: no room to replenish, so the claims are measured alone
          // (not against the boot of their replacements in the same process).
          maxTotal: minWarm > 0 ? minWarm : SESSIONS + 5,
        },
        [OTHER_FLAVOR]: {
          kubernetesVersion: '1.30',
          nodes: 4 - NODES,
          minWarm: 0,
          maxTotal: 1,
        },
      },
      pool: {
        pollSeconds: 0.05,
        maxProvisioning: SESSIONS + minWarm,
        workerConcurrency: SESSIONS + minWarm,
        // Figures are taken before the stop: a job still running then (a
        // replenish, a teardown) must not hold it for the default 30 s.
        shutdownGraceSeconds: 1,
      },
    },
  });
  const { labvirt } = stack;
  const byCall = new Map<string, number>();
  labvirt.context.cluster.onRequest((verb, resource) => {
    requests++;
    byCall.set(`${verb} ${resource}`, (byCall.get(`${verb} ${resource}`) ?? 0) + 1);
  });
  // Each phase's time, printed: a slow smoke lane says where its time went.
  const round = minWarm > 0 ? 'warm round' : 'cold round';
  const phases: string[] = [];
  let phaseStart = Date.now();
  const phaseDone = (name: string) => {
    phases.push(`${name} ${secondsSince(phaseStart)} s`);
    phaseStart = Date.now();
  };
  try {
    await labvirt.runMaintenance('replenish');
    await waitFor(
      async () => ((await labvirt.store.countByState(FLAVOR)).warm ?? 0) >= minWarm,
      300_000,
      'warm pool',
    );
    phaseDone('pool filled in');
    const writesSoFar = () =>
      [...byCall].filter(([call]) => isWrite(call)).reduce((sum, [, count]) => sum + count, 0);
    // An env's `Warm` Event is written after its warm label: let those land
    // (no write for half a second) so they count as the fill's, not the claims'.
    let fillWrites = writesSoFar();
    const quietBy = Date.now() + 10_000;
    for (let quietFor = 0; quietFor < 500 && Date.now() < quietBy;) {
      await new Promise((r) => setTimeout(r, 100));
      const now = writesSoFar();
      quietFor = now === fillWrites ? quietFor + 100 : 0;
      fillWrites = now;
    }
    phaseStart = Date.now();
    requests = 0;
    byCall.clear();
    // Waits on labvirt's own event, not on status reads: the bench's waiting
    // makes no API request of its own, so every request counted is labvirt's.
    const readyAt = new Map<string, number>();
    const offReady = labvirt.events.on('session.ready', (e) => {
      readyAt.set(e.sessionId, Date.now());
    });
    const latencies = await Promise.all(
      Array.from({ length: SESSIONS }, async (_, i) => {
        const started = Date.now();
        // start() itself asks for a replenish (a queued, deduplicated job).
        const s = await labvirt.service.start({ student: `bench${i}`, labId: LAB });
        await waitFor(async () => readyAt.has(s.id), 300_000, `session ${s.id}`);
        return readyAt.get(s.id)! - started;
      }),
    );
    offReady();
    phaseDone('claims');
    // Release everything and wait until the envs are gone: a whole lifecycle.
    // The warm target goes to 0 first: otherwise each teardown frees room for
    // a replacement, and that env's writes (about 13) would be counted as the
    // claimed env's.
    await labvirt.service.setWarmTarget(FLAVOR, 0);
    for (const s of await labvirt.service.list()) await labvirt.service.stop(s.id);
    await waitFor(
      async () => (await labvirt.store.listEnvs({ flavor: FLAVOR })).length === 0,
      300_000,
      'teardown',
    );
    phaseDone('torn down in');
    const breakdown = [...byCall]
      .sort((x, y) => y[1] - x[1])
      .map(([call, n]) => `${call} ${(n / SESSIONS).toFixed(1)}`)
      .join(', ');
    const writes = writesSoFar();
    // Reads that only wait for something to change (VMI status, namespace
    // gone): VMI lists beyond the shared watch's own (re)lists and each
    // claim's one look at where its nodes run, and Namespace reads beyond the
    // three one-off looks per env (provisioning's check for an earlier
    // attempt, the Event recorder's uid lookup, teardown's look before it
    // deletes).
    const calls = (call: string) => byCall.get(call) ?? 0;
    const polls =
      Math.max(
        0,
        calls('list VirtualMachineInstance') -
          labvirt.context.cluster.vmis().relistCount -
          SESSIONS,
      ) + Math.max(0, calls('get Namespace') - 3 * SESSIONS);
    return {
      latencies,
      requestsPerEnv: requests / SESSIONS,
      writesPerEnv: writes / SESSIONS,
      fillWritesPerEnv: minWarm > 0 ? fillWrites / minWarm : 0,
      pollingReads: polls / SESSIONS,
      breakdown,
    };
  } finally {
    await stack.stop();
    phaseDone('stopped in');
    console.log(`${round}: ${phases.join(', ')}`);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `labvirt serve` from dist/ (the production path) in a process of its own, pool settings as given. */
async function forkServe(
  dir: string,
  name: string,
  sim: { kubeconfig: string; guestMap: string },
  redisUrl: string,
  minWarm: number,
  maxTotal = Math.max(1, minWarm),
): Promise<{
  serve: ReturnType<typeof forkLabvirt>;
  warm: () => Promise<number>;
  setTarget: (targetWarm: number) => Promise<void>;
  memory: () => Promise<string>;
  heapSnapshot: (label: string) => Promise<void>;
}> {
  const token = 'bench-token-bench-token-bench';
  const configFile = join(dir, `${name}.json`);
  const apiPort = await writeServeConfig({
    file: configFile,
    dir,
    labsDir: LABS,
    sim,
    redisUrl,
    redisPrefix: REDIS_PREFIX,
    flavors: {
      [FLAVOR]: { kubernetesVersion: '1.30', nodes: NODES, minWarm, maxTotal },
      [OTHER_FLAVOR]: { kubernetesVersion: '1.30', nodes: 4 - NODES, minWarm: 0, maxTotal: 1 },
    },
    pool: { pollSeconds: 0.5, maxProvisioning: 50, workerConcurrency: 50, shutdownGraceSeconds: 1 },
  });
  const serve = forkLabvirt(['--config', configFile, 'serve'], { LABVIRT_API_TOKEN: token }, [
    ...SERVE_EXEC_ARGV,
    ...(HEAP_DIR ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${HEAP_DIR}`] : []),
  ]);
  const base = `http://127.0.0.1:${apiPort}`;
  await waitFor(
    async () => {
      if (serve.child.exitCode !== null) throw new Error(`serve exited: ${serve.output()}`);
      return fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
    },
    120_000,
    'labvirt serve',
    200,
  );
  const warm = async () => {
    const res = await fetch(`${base}/v1/pool`, { headers: { authorization: `Bearer ${token}` } });
    // A loaded serve may answer 503 (the pool not readable in time): ask again later.
    if (!res.ok) return -1;
    const pool = (await res.json()) as {
      flavors: { flavor: string; counts: Record<string, number> }[];
    };
    return pool.flavors.find((f) => f.flavor === FLAVOR)?.counts.warm ?? 0;
  };
  // As `labvirt pool target` does: the override, and a replenish at once
  // (an override written to Redis alone waits for the next replenish cron,
  // up to a minute, which the smoke run paid as a 12–42 s "fill" of one env).
  const setTarget = async (targetWarm: number) => {
    const res = await fetch(`${base}/v1/pool/flavors/${FLAVOR}/target`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targetWarm }),
    });
    if (!res.ok) throw new Error(`PUT the warm target: ${res.status} ${await res.text()}`);
  };
  // Where serve's RSS goes, from its own Prometheus metrics (prom-client's process.memoryUsage()).
  const memory = async () => {
    const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) return `metrics: ${res.status}`;
    const text = await res.text();
    const mib = (name: string) => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
      return m ? (Number(m[1]) / 2 ** 20).toFixed(1) : '?';
    };
    return `heap used ${mib('nodejs_heap_size_used_bytes')} MiB of ${mib('nodejs_heap_size_total_bytes')} MiB, external ${mib('nodejs_external_memory_bytes')} MiB`;
  };
  /** Writes serve's heap snapshot to HEAP_DIR/serve.<label>.heapsnapshot (serve stops while V8 writes it). */
  const heapSnapshot = async (label: string) => {
    if (!HEAP_DIR) return;
    const before = new Set(readdirSync(HEAP_DIR));
    serve.child.kill('SIGUSR2');
    // Written on serve's main thread: once it answers again, the file is whole.
    await waitFor(
      async () =>
        readdirSync(HEAP_DIR).some((f) => !before.has(f) && f.endsWith('.heapsnapshot')) &&
        (await fetch(`${base}/healthz`).then(
          (r) => r.ok,
          () => false,
        )),
      600_000,
      'serve heap snapshot',
      1000,
    );
    const file = readdirSync(HEAP_DIR).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'))!;
    renameSync(join(HEAP_DIR, file), join(HEAP_DIR, `serve.${label}.heapsnapshot`));
    console.log(`hold: heap snapshot ${join(HEAP_DIR, `serve.${label}.heapsnapshot`)}`);
  };
  return { serve, warm, setTarget, memory, heapSnapshot };
}

/**
 * bin/labvirt.js runs the sources through tsx (its transpiler in the
 * process) when dist/ is older than any source file: the hold would measure
 * that, not what an operator runs.
 */
function isBuilt(): boolean {
  return distIsCurrent(join(import.meta.dirname, '..'));
}

/** Guests' helper processes alive on this machine (src/sim/guest/spawner.ts), and their RSS summed. */
function guestHelpers(): { count: number; rssMiB: number } {
  let count = 0;
  let rssMiB = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv[1] !== '-e' || argv[2] !== HELPER_SOURCE) continue;
      count++;
      rssMiB += processRssMiB(Number(name));
    } catch {
      /* gone while read */
    }
  }
  return { count, rssMiB };
}

/** MemAvailable in MiB (/proc/meminfo). */
function memAvailableMiB(): number {
  const kb = Number(/MemAvailable:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]);
  return kb / 1024;
}

/** Below this the hold stops rather than push the shared machine out of memory. */
const MIN_AVAILABLE_MIB = Number(process.env.BENCH_MIN_AVAILABLE_MIB ?? 3072);

/**
 * RSS of a process once it has settled, in MiB. Sampled once a second in
 * windows of `window` seconds; the reading is the median of the first
 * window, after `minSeconds`, whose median is within 2 % of the one before
 * (or of the last, at `maxSeconds`). After a fill V8 keeps the heap it grew
 * for a minute or two and then gives it back (2026-12-06, 1,000 envs:
 * 453 → 422 → 258 → 237 → 238 MiB, 237 for minutes after; another run was
 * flat at 293 for its first minute with a third of its heap unused): what a
 * pool held for hours costs is the settled figure, and the first windows
 * say how high a fill goes.
 */
async function rssSettled(
  pid: number,
  window: number,
  maxSeconds: number,
  minSeconds = 0,
): Promise<{
  reading: number;
  max: number;
  min: number;
  trend: string;
  settled: boolean;
  seconds: number;
}> {
  const samples: number[] = [];
  const medians: number[] = [];
  let settled = false;
  while (samples.length + window <= Math.max(window, maxSeconds)) {
    const part: number[] = [];
    for (let i = 0; i < window; i++) {
      part.push(processRssMiB(pid));
      await new Promise((r) => setTimeout(r, 1000));
    }
    samples.push(...part);
    medians.push(pct(part, 50));
    const [previous, last] = medians.slice(-2);
    if (
      samples.length >= minSeconds &&
      previous !== undefined &&
      Math.abs(last! - previous) <= 0.02 * previous
    ) {
      settled = true;
      break;
    }
  }
  return {
    reading: medians[medians.length - 1]!,
    max: Math.max(...samples),
    min: Math.min(...samples),
    trend: medians.map((m) => m.toFixed(0)).join(' → '),
    settled,
    seconds: samples.length,
  };
}

/** How a settled reading came about, for the bench's lines. */
function settledText(r: Awaited<ReturnType<typeof rssSettled>>, window: number): string {
  // One window (the smoke run's few envs): nothing to settle against.
  if (!r.settled && !r.trend.includes('→'))
    return `rss median ${r.reading.toFixed(0)} MiB over ${r.seconds} s (max ${r.max.toFixed(0)})`;
  const how = r.settled ? `settled after ${r.seconds} s` : `NOT settled within ${r.seconds} s`;
  return `rss ${r.reading.toFixed(0)} MiB ${how} (medians of each ${window} s: ${r.trend}; max ${r.max.toFixed(0)}, min ${r.min.toFixed(0)})`;
}

/**
 * RSS holding warm envs, as an operator sees it: `labvirt serve` built
 * (dist/) in its own process, the simulator and Redis in theirs. First the
 * serve with an empty pool (the fixed cost: every role started, nothing
 * held); then the same serve fills the pool in steps (BENCH_HOLD_LEVELS,
 * default half of BENCH_HOLD_ENVS then all of it; each step raised through
 * the operator's warm-target API, `PUT /v1/pool/flavors/<flavor>/target`,
 * as `labvirt pool target` does) and
 * holds each step. Each is read from /proc once a second until it settles
 * (rssSettled: windows of BENCH_HOLD_WINDOW_SECONDS, default 30, at least
 * BENCH_HOLD_MIN_SECONDS, default 180, at most BENCH_HOLD_SECONDS, default
 * 300). The slope that counts is
 * the marginal one between the last two steps: the first env's share of a
 * fill (V8's young generation grown to its maximum, the allocator's arenas
 * after 50 provisions at once) is not a per-env cost.
 */
async function holdEnvs(): Promise<void> {
  const from =
    (isBuilt() ? 'dist/' : 'src/ through tsx') +
    (SERVE_EXEC_ARGV.length ? ` with ${SERVE_EXEC_ARGV.join(' ')}` : '');
  if (!isBuilt())
    console.log(
      'hold: dist/ is missing or older than src/, so serve runs the sources through tsx (its transpiler counted): `npm run build` first to measure what an operator runs',
    );
  const levels = (process.env.BENCH_HOLD_LEVELS ?? `${Math.ceil(HOLD / 2)},${HOLD}`)
    .split(',')
    .map(Number);
  const top = Math.max(...levels);
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-hold-'));
  const redis = await startRedisServer();
  // Room for every env: a VM takes about 1.8 GiB with KubeVirt's overhead.
  const sim = await forkSim(join(dir, 'sim'), {
    speed: SPEED,
    nodes: Math.ceil((top * NODES * 2) / 256) + 1,
    guestIdleStopSeconds: GUEST_IDLE_STOP_SECONDS,
  });
  // The smoke run's few envs need no long window.
  const holdSeconds = Number(process.env.BENCH_HOLD_SECONDS ?? (top >= 100 ? 300 : 3));
  const holdWindow = Number(process.env.BENCH_HOLD_WINDOW_SECONDS ?? (top >= 100 ? 30 : 3));
  // V8's memory reducer starts a minute or more after a fill: no reading settles before.
  const holdMinSeconds = Number(process.env.BENCH_HOLD_MIN_SECONDS ?? (top >= 100 ? 180 : 0));
  const settleMs = Math.min(10, holdWindow) * 1000;
  let serve: ReturnType<typeof forkLabvirt> | undefined;
  try {
    console.log(`hold: ${machineLoad()} at the start`);
    // One serve for every step: started with an empty pool (minWarm 0), then
    // raised step by step (a second serve for the empty figure cost the smoke
    // run a process start and stop, and measured the same fresh process).
    const full = await forkServe(dir, 'hold', sim, redis.url, 0, top);
    serve = full.serve;
    // Let start-up work (first reconcile, the shared watches' lists) settle.
    await new Promise((r) => setTimeout(r, settleMs));
    const fixed = await rssSettled(serve.child.pid!, holdWindow, holdSeconds, holdMinSeconds);
    console.log(
      `hold: serve from ${from} with an empty pool: ${settledText(fixed, holdWindow)} (${machineLoad()})`,
    );
    console.log(`hold: empty pool: serve ${await full.memory()}`);
    await full.heapSnapshot('0');
    const steps: { envs: number; rss: number }[] = [{ envs: 0, rss: fixed.reading }];
    const state = () => {
      const h = guestHelpers();
      return `${h.count} guest helpers (${h.rssMiB.toFixed(0)} MiB RSS summed), sim rss ${processRssMiB(sim.child.pid!).toFixed(0)} MiB, serve rss ${processRssMiB(serve!.child.pid!).toFixed(0)} MiB, ${memAvailableMiB().toFixed(0)} MiB available`;
    };
    for (const level of levels) {
      const t0 = Date.now();
      await full.setTarget(level);
      let lastWarm = 0;
      let lastReport = 0;
      await waitFor(
        async () => {
          lastWarm = await full.warm();
          if (memAvailableMiB() < MIN_AVAILABLE_MIB)
            throw new Error(
              `stopped at ${lastWarm} warm envs: under ${MIN_AVAILABLE_MIB} MiB available (${state()})`,
            );
          if (Date.now() - lastReport >= 30_000) {
            lastReport = Date.now();
            console.log(
              `hold: filling to ${level}: ${lastWarm} warm after ${((Date.now() - t0) / 1000).toFixed(0)} s; ${state()} (${machineLoad()})`,
            );
          }
          return lastWarm >= level;
        },
        30 * 60_000,
        `${level} warm envs`,
        250,
      );
      const fillMs = Date.now() - t0;
      // Let the fill's last work settle, then hold with the periodic work running.
      await new Promise((r) => setTimeout(r, settleMs));
      const cpu0 = processCpuMs(serve.child.pid!);
      const wall0 = Date.now();
      const held = await rssSettled(serve.child.pid!, holdWindow, holdSeconds, holdMinSeconds);
      const cpuShare = ((processCpuMs(serve.child.pid!) - cpu0) / (Date.now() - wall0)) * 100;
      const previous = steps[steps.length - 1]!;
      const slope = ((held.reading - previous.rss) * 1024) / (level - previous.envs);
      console.log(
        `hold: serve holding ${level} warm envs (filled in ${(fillMs / 1000).toFixed(1)} s): ${settledText(held, holdWindow)}, ${slope.toFixed(0)} KiB per env added since ${previous.envs}; CPU ${cpuShare.toFixed(1)} % of one core over ${held.seconds} s (${machineLoad()})`,
      );
      console.log(`hold: at ${level} warm envs: ${state()}; serve ${await full.memory()}`);
      await full.heapSnapshot(String(level));
      steps.push({ envs: level, rss: held.reading });
    }
    const last = steps[steps.length - 1]!;
    const before = steps[steps.length - 2]!;
    // Below 100 envs added the per-env slope is lost in the process's own noise.
    const perEnvMiB = (last.rss - before.rss) / (last.envs - before.envs);
    const at1000 = last.rss + perEnvMiB * (1000 - last.envs);
    const measured = `${last.rss.toFixed(0)} MiB at ${last.envs} envs, ${fixed.reading.toFixed(0)} MiB with none (each once settled)`;
    // A slope at or below zero is the process's own swing (GC, the allocator) over too few envs: no projection.
    const measurable = last.envs - before.envs >= 100 && perEnvMiB > 0;
    if (last.envs >= 1000) {
      // Read, not projected: the target's own figure.
      result({
        what: `RSS of serve (${from}) holding ${last.envs} warm ${NODES}-VM envs (measured)`,
        figure: `${last.rss.toFixed(0)} MiB once settled; ${fixed.reading.toFixed(0)} MiB with none, ${before.rss.toFixed(0)} MiB at ${before.envs}`,
        target: '< 300 MiB at 1,000',
        met: last.rss < 300,
      });
    } else if (measurable) {
      result({
        what: `RSS of serve (${from}) holding 1,000 warm ${NODES}-VM envs (${last.envs} measured, the rest by the slope ${before.envs}→${last.envs})`,
        figure: `${at1000.toFixed(0)} MiB; ${measured}, ${(perEnvMiB * 1024).toFixed(0)} KiB per env`,
        target: '< 300 MiB',
        met: at1000 < 300,
      });
    } else {
      result({
        what: `RSS of serve (${from}) holding ${last.envs} warm ${NODES}-VM envs (the slope ${before.envs}→${last.envs}, ${(perEnvMiB * 1024).toFixed(0)} KiB per env, is within the noise)`,
        figure: measured,
        target: '< 300 MiB at 1,000',
        // Already over the target with fewer envs: not met, whatever the slope.
        met: last.rss >= 300 ? false : undefined,
      });
    }
  } finally {
    await serve?.stop();
    await sim.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `--name N` on the command line; the default when the option or its number is absent. */
function numberArg(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  const given = at < 0 ? undefined : process.argv[at + 1];
  if (given === undefined || given.startsWith('--')) return fallback;
  const value = Number(given);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`${name} takes a whole number (got ${given})`);
    process.exit(2);
  }
  return value;
}

if (burstArg > 0) {
  await runBurst({
    students: numberArg('--burst', 200),
    speed: SPEED,
    replicas: numberArg('--replicas', 1),
    line: numberArg('--line', 0),
  });
  process.exit(0);
}

const singleArg = process.argv.indexOf('--single');
if (singleArg > 0) {
  await runSingle({
    students: Number(process.argv[singleArg + 1] ?? 20),
    warmSpeed: SPEED,
    coldStudents: Number(process.env.BENCH_COLD_STUDENTS ?? 3),
    coldSpeed: Number(process.env.BENCH_COLD_SPEED ?? 1),
  });
  process.exit(0);
}

if (process.argv.includes('--hold')) {
  await holdEnvs();
  process.exit(0);
}

const warm = await claimLatencies(SESSIONS);
const cold = await claimLatencies(0);
for (const [name, r] of [
  ['warm pool', warm],
  ['cold provisioning', cold],
] as const) {
  console.log(
    `claim-to-ready (${name}, ${SESSIONS} sessions): p50 ${pct(r.latencies, 50)} ms, p95 ${pct(r.latencies, 95)} ms, p99 ${pct(r.latencies, 99)} ms`,
  );
}
console.log(
  `ratio cold/warm: p50 ${(pct(cold.latencies, 50) / pct(warm.latencies, 50)).toFixed(1)}x, p95 ${(pct(cold.latencies, 95) / pct(warm.latencies, 95)).toFixed(1)}x`,
);
console.log(
  `kube API requests per env lifecycle (cold: provision → claim → release → deleted): ${cold.requestsPerEnv.toFixed(1)} (${cold.breakdown})`,
);
// Issue #12's "single warm claim" and "cold ÷ warm" targets are judged by
// `--single` (one student at a time, through the API, serve in its own
// process); these are a small burst in one process, for comparison with
// earlier runs.
result({
  what: `warm claims, ${NODES}-VM envs, ${SESSIONS} at once in-process, p99`,
  figure: `p99 ${pct(warm.latencies, 99)} ms (p50 ${pct(warm.latencies, 50)} ms)`,
});
result({
  what: `cold ÷ warm claim-to-ready, ${SESSIONS} at once in-process, speed ${SPEED}`,
  figure: `p50 ${(pct(cold.latencies, 50) / pct(warm.latencies, 50)).toFixed(1)}×`,
});
result({
  what: `API writes per ${NODES}-VM lifecycle`,
  figure: `${cold.writesPerEnv.toFixed(1)} writes, ${cold.pollingReads.toFixed(1)} polling reads`,
  target: '≤ 12 writes, 0 polling reads',
  met: cold.writesPerEnv <= 12 && cold.pollingReads === 0,
});
console.log(
  `kube API requests per claim from a warm pool (claim → release → deleted): ${warm.requestsPerEnv.toFixed(1)} (${warm.breakdown})`,
);
// The pool's usual path: the env waits warm (its `warm` label, which an env
// served straight to a waiting student never takes), then is claimed.
const warmLifecycleWrites = warm.fillWritesPerEnv + warm.writesPerEnv;
result({
  what: `API writes per ${NODES}-VM lifecycle through the warm pool (provision → warm → claim → release → deleted)`,
  figure: `${warmLifecycleWrites.toFixed(1)} writes (${warm.fillWritesPerEnv.toFixed(1)} to make the env warm, ${warm.writesPerEnv.toFixed(1)} from its claim on)`,
  target: '≤ 12 writes',
  met: warmLifecycleWrites <= 12,
});
// BENCH_HOLD_ENVS=0: the claim and write figures only.
if (HOLD > 0) await holdEnvs();
process.exit(0);
