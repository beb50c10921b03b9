import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
/**
 * The whole smoke run's bound. Each bench has its own inside run.ts (300 s);
 * this one only keeps a run that stops making progress from holding CI (the
 * run takes 1–2 minutes on a quiet 2-core machine).
 */
const BOUND_MS = 12 * 60_000;
/** `nice` 10: the suite's own tests first. */
const SMOKE_NICENESS = 10;

let running: ReturnType<typeof spawn> | undefined;
afterAll(() => {
  // The run and its benches (and their simulators) share a process group.
  if (running?.pid !== undefined && running.exitCode === null)
    process.kill(-running.pid, 'SIGKILL');
});

// The benches' smoke run (`npm run bench:smoke`) as a test (`npm run test:smoke`,
// which `npm test` runs after the suite, so CI runs it too): every bench
// starts its real parts at its smallest size and writes its rows. It fails
// only when a bench fails, hangs or writes no row — never on a slow figure
// (the figures are printed, not judged). Two benches at a time, as `npm run
// bench:smoke`: after the suite it has the machine to itself.
it(
  'runs every bench at its smallest size and each one writes its rows',
  async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'bench', 'run.ts'), '--quick', '--jobs=2'],
      { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    running = child;
    // Run beside the suite (`LABVIRT_BENCH_SMOKE=1 vitest run`), the run and
    // every process it starts (which inherit this) take only what the suite's
    // tests leave idle; after the suite (`npm test`) it costs nothing.
    if (child.pid !== undefined) setPriority(child.pid, SMOKE_NICENESS);
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    const closing = /^bench smoke run: .*$/m.exec(output)?.[0];
    // The run's time, per bench, and the load, in the suite's log (CI's too).
    const summary = /^machine: .*$/m.exec(output)?.[0];
    if (summary) console.log(`benches' smoke run: ${summary}`);
    // A bench that waited on something to stop says so; in the log, such a wait explains a slow lane.
    for (const line of output.match(/^.*(did not stop|not waited for).*$/gm) ?? [])
      console.log(`benches' smoke run: ${line}`);
    // On failure the message carries the run's end: which bench, and its last lines.
    expect({ code, closing }, output.length > 6000 ? `…${output.slice(-6000)}` : output).toEqual({
      code: 0,
      closing: expect.stringMatching(/^bench smoke run: all \d+ benches ran and wrote their rows$/),
    });
    // Every bench of the run is in the table (a bench that wrote no row is a failure above).
    expect(output).toMatch(/^\| what +\| figure +\| target +\| met +\|$/m);
  },
  BOUND_MS,
);
