/**
 * `npm run bench [-- --quick]`: runs every bench, each in its own process,
 * and prints one table with the targets beside the figures. `--quick` (the
 * CI smoke run: `npm test` ends with it) uses the smallest counts; the full
 * run uses the counts of issue #12 (a class of 200).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { machineLoad, ROOT, type ResultRow } from './lib.js';

const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);

interface BenchRun {
  name: string;
  file: string;
  args?: string[];
  env: Record<string, string>;
  timeoutMs: number;
}

// The smoke run proves every bench still runs and prints its rows, with the
// smallest sizes that exercise each path (a burst of 3 still claims in
// parallel, 2 levels of the sync still give a marginal cost); its figures say
// nothing about the targets. Each bench has a bound of its own, so a hung one
// fails the run instead of holding CI.
const QUICK_SPEED = '100';
/** Each bench's bound in the smoke run: generous (a shared machine can be loaded), never endless. */
const QUICK_BOUND_MS = 300_000;
const runs: BenchRun[] = quick
  ? [
      { name: 'cli', file: 'cli.bench.ts', env: { BENCH_RUNS: '3' }, timeoutMs: QUICK_BOUND_MS },
      {
        name: 'pool',
        file: 'pool.bench.ts',
        env: { BENCH_SESSIONS: '2', BENCH_HOLD_ENVS: '2', BENCH_SPEED: QUICK_SPEED },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'burst',
        file: 'pool.bench.ts',
        args: ['--burst', '3'],
        env: { BENCH_SPEED: QUICK_SPEED, BENCH_BURST_TIMEOUT_S: '60' },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'gateway',
        file: 'gateway-openssh.bench.ts',
        env: { BENCH_LOGINS: '5', BENCH_ENVS: '1', BENCH_MB: '1', BENCH_ROUNDS: '1' },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'gateway-ssh2',
        file: 'gateway.bench.ts',
        env: { BENCH_CONNECTIONS: '5', BENCH_ENVS: '1', BENCH_MB: '1' },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'slack',
        file: 'slack.bench.ts',
        args: ['--quick'],
        env: { BENCH_SESSIONS: '3', BENCH_SPEED: QUICK_SPEED },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'sync',
        file: 'sync.bench.ts',
        env: { BENCH_LEVELS: '1,2', BENCH_SAMPLES: '3', BENCH_IDLE_SECONDS: '1' },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'sim',
        file: 'sim.bench.ts',
        env: { BENCH_VMS: '5', BENCH_REQUESTS: '50' },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'ssh-cost',
        file: 'ssh-cost.bench.ts',
        env: { BENCH_CONNECTIONS: '10', BENCH_COMMANDS: '20' },
        timeoutMs: QUICK_BOUND_MS,
      },
      {
        name: 'web-terminal',
        file: 'web-terminal.bench.ts',
        env: { BENCH_SESSIONS: '2', BENCH_ENVS: '1', BENCH_KEYS: '2', BENCH_ROUNDS: '1' },
        timeoutMs: QUICK_BOUND_MS,
      },
    ]
  : [
      { name: 'cli', file: 'cli.bench.ts', env: { BENCH_RUNS: '15' }, timeoutMs: 180_000 },
      {
        name: 'pool',
        file: 'pool.bench.ts',
        env: { BENCH_SESSIONS: '20', BENCH_HOLD_ENVS: '200' },
        timeoutMs: 900_000,
      },
      {
        name: 'burst',
        file: 'pool.bench.ts',
        args: ['--burst', '200'],
        env: {},
        timeoutMs: 1_200_000,
      },
      { name: 'gateway', file: 'gateway-openssh.bench.ts', env: {}, timeoutMs: 600_000 },
      {
        name: 'gateway-ssh2',
        file: 'gateway.bench.ts',
        env: { BENCH_CONNECTIONS: '200' },
        timeoutMs: 600_000,
      },
      { name: 'slack', file: 'slack.bench.ts', env: {}, timeoutMs: 1_200_000 },
      { name: 'sync', file: 'sync.bench.ts', env: {}, timeoutMs: 1_800_000 },
      { name: 'sim', file: 'sim.bench.ts', env: {}, timeoutMs: 600_000 },
      { name: 'ssh-cost', file: 'ssh-cost.bench.ts', env: {}, timeoutMs: 300_000 },
      { name: 'web-terminal', file: 'web-terminal.bench.ts', env: {}, timeoutMs: 900_000 },
    ];

/** Rows a bench wrote to its results file. */
function rowCount(resultsFile: string): number {
  try {
    return readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0; // the bench wrote no row
  }
}

/**
 * Runs one bench with its own results file; 'ok' only when it exited 0 and
 * wrote at least one row of the table.
 */
function runOne(run: BenchRun, resultsFile: string): Promise<string> {
  return new Promise((resolve) => {
    console.log(`\n### ${run.name}: ${run.file} ${(run.args ?? []).join(' ')}`);
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', join(ROOT, 'bench', run.file), ...(run.args ?? [])],
      {
        cwd: ROOT,
        stdio: 'inherit',
        env: { ...process.env, ...run.env, BENCH_RESULTS: resultsFile },
      },
    );
    const timer = setTimeout(() => child.kill('SIGTERM'), run.timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) resolve(`failed (${signal ?? `exit ${code}`})`);
      else if (rowCount(resultsFile) === 0) resolve('failed (exit 0 but no row written)');
      else resolve('ok');
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-results-'));
const started = Date.now();
const loadBefore = machineLoad();
const selected = runs.filter((run) => !only || only.split(',').includes(run.name));
const durations: string[] = [];
const runTimed = async (run: BenchRun): Promise<[string, string]> => {
  const t0 = Date.now();
  const outcome = await runOne(run, join(dir, `${run.name}.jsonl`));
  durations.push(`${run.name} ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return [run.name, outcome];
};
const oneByOne = (list: BenchRun[]) =>
  list.reduce<Promise<[string, string][]>>(
    async (done, run) => [...(await done), await runTimed(run)],
    Promise.resolve([]),
  );
// One bench at a time, the smoke run too: side by side (tried on
// 2026-12-05 at load 27–32) the simulators did not even start within their
// 60 s and half the benches failed; one by one all passed.
const outcomes: [string, string][] = await oneByOne(selected);
const rows: ResultRow[] = selected.flatMap((run) => {
  try {
    return readFileSync(join(dir, `${run.name}.jsonl`), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as ResultRow);
  } catch {
    return []; // no row from this bench (reported as failed)
  }
});
rmSync(dir, { recursive: true, force: true });

const header = ['what', 'figure', 'target', 'met'];
const table = rows.map((r) => [
  r.what,
  r.figure,
  r.target ?? '',
  r.met === undefined ? '' : r.met ? 'yes' : 'NO',
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
const line = (cells: string[]) =>
  '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
console.log(`\n## labvirt bench (${quick ? 'quick' : 'full'}), ${new Date().toISOString()}`);
console.log(
  `machine: ${cpus().length} cores; before: ${loadBefore}; after: ${machineLoad()}; took ${((Date.now() - started) / 1000).toFixed(0)} s (${durations.join(', ')})`,
);
console.log(line(header));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of table) console.log(line(r));
for (const [name, outcome] of outcomes)
  if (outcome !== 'ok') console.log(`bench ${name}: ${outcome}`);
// The closing line (`npm test` ends with the quick run: CI reads its exit code).
const passed = outcomes.filter(([, o]) => o === 'ok').length;
console.log(
  passed === outcomes.length
    ? `bench ${quick ? 'smoke run' : 'run'}: all ${passed} benches ran and wrote their rows`
    : `bench ${quick ? 'smoke run' : 'run'}: ${outcomes.length - passed} of ${outcomes.length} benches failed`,
);
process.exit(passed === outcomes.length && outcomes.length > 0 ? 0 : 1);
