/**
 * `npm run bench [-- --quick]`: runs every bench, each in its own process,
 * and prints one table with the targets beside the figures. `--quick` (under
 * two minutes, the CI smoke run) uses small counts; the full run uses the
 * counts of issue #12 (a class of 200).
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

const runs: BenchRun[] = quick
  ? [
      { name: 'cli', file: 'cli.bench.ts', env: { BENCH_RUNS: '5' }, timeoutMs: 120_000 },
      {
        name: 'pool',
        file: 'pool.bench.ts',
        env: { BENCH_SESSIONS: '5', BENCH_HOLD_ENVS: '5', BENCH_SPEED: '50' },
        timeoutMs: 180_000,
      },
      {
        name: 'burst',
        file: 'pool.bench.ts',
        args: ['--burst', '20'],
        env: { BENCH_SPEED: '50' },
        timeoutMs: 180_000,
      },
      {
        name: 'gateway',
        file: 'gateway-openssh.bench.ts',
        env: { BENCH_LOGINS: '50', BENCH_ENVS: '5', BENCH_MB: '8', BENCH_ROUNDS: '1' },
        timeoutMs: 180_000,
      },
      {
        name: 'slack',
        file: 'slack.bench.ts',
        args: ['--quick'],
        env: {},
        timeoutMs: 300_000,
      },
      {
        name: 'sync',
        file: 'sync.bench.ts',
        env: { BENCH_LEVELS: '1,20', BENCH_SAMPLES: '10', BENCH_IDLE_SECONDS: '5' },
        timeoutMs: 300_000,
      },
      {
        name: 'web-terminal',
        file: 'web-terminal.bench.ts',
        env: { BENCH_SESSIONS: '20', BENCH_ENVS: '5', BENCH_KEYS: '8' },
        timeoutMs: 180_000,
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
      { name: 'web-terminal', file: 'web-terminal.bench.ts', env: {}, timeoutMs: 900_000 },
    ];

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
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code === 0 ? 'ok' : `failed (${signal ?? `exit ${code}`})`);
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-results-'));
const resultsFile = join(dir, 'results.jsonl');
const started = Date.now();
const loadBefore = machineLoad();
const outcomes: [string, string][] = [];
for (const run of runs) {
  if (only && !only.split(',').includes(run.name)) continue;
  outcomes.push([run.name, await runOne(run, resultsFile)]);
}
let rows: ResultRow[] = [];
try {
  rows = readFileSync(resultsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ResultRow);
} catch {
  // no bench wrote a row
}
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
  `machine: ${cpus().length} cores; before: ${loadBefore}; after: ${machineLoad()}; took ${((Date.now() - started) / 1000).toFixed(0)} s`,
);
console.log(line(header));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of table) console.log(line(r));
for (const [name, outcome] of outcomes)
  if (outcome !== 'ok') console.log(`bench ${name}: ${outcome}`);
process.exit(outcomes.every(([, o]) => o === 'ok') ? 0 : 1);
