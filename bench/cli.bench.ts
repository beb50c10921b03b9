/**
 * CLI start-up (run: `npx tsx bench/cli.bench.ts`): `labvirt --help` as a user
 * runs it (the compiled CLI in dist/, built first, as `npm ci` does) against
 * a bare `node -e 0` in the same run, alternating, BENCH_RUNS times each
 * (default 10). The ratio of the medians is the figure.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { distIsCurrent } from '../bin/dist-is-current.js';
import { LABVIRT_BIN, ROOT, pct, result } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 10);

function timeRun(args: string[]): number {
  const t = performance.now();
  const r = spawnSync(process.execPath, args, {
    stdio: 'ignore',
    env: { ...process.env, LABVIRT_FROM_SOURCE: '' },
  });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}`);
  return performance.now() - t;
}

// bin/labvirt.js runs dist/ when it is newer than every source file. `npm ci`
// builds it with tsc; when dist/ is stale, esbuild transpiles the same files
// here in a second (the same JavaScript without the type check, which the
// bench does not need), and the Kubernetes client is bundled as `npm run
// build` does. A current dist/ is left as it is: rewriting it would undo that
// bundle for every later user of dist/ (the smoke run is part of `npm test`).
if (!distIsCurrent(ROOT)) await transpile();

async function transpile(): Promise<void> {
  await build({
    entryPoints: listSources(join(ROOT, 'src')),
    outdir: join(ROOT, 'dist'),
    outbase: join(ROOT, 'src'),
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    logLevel: 'warning',
  });
  execFileSync(
    process.execPath,
    [join(ROOT, 'scripts', 'bundle-client-node.mjs'), join(ROOT, 'dist')],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
}

const bare: number[] = [];
const help: number[] = [];
for (let i = 0; i < RUNS; i++) {
  bare.push(timeRun(['-e', '0']));
  help.push(timeRun([LABVIRT_BIN, '--help']));
}
const ratio = pct(help, 50) / pct(bare, 50);
console.log(
  `cli: node -e 0 p50 ${pct(bare, 50).toFixed(0)} ms; labvirt --help p50 ${pct(help, 50).toFixed(0)} ms (${RUNS} runs each)`,
);
result({
  what: '`labvirt --help` ÷ `node -e 0`',
  figure: `${ratio.toFixed(1)}× (${pct(help, 50).toFixed(0)} ms vs ${pct(bare, 50).toFixed(0)} ms)`,
  target: '≤ 2.5×',
  met: ratio <= 2.5,
});

function listSources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return listSources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}
