import { afterAll, expect, vi } from 'vitest';
import { captureProcessState, leftoversBetween, restoreGlobals } from './leftovers-check.js';
import { timersSince, traceTimers } from './timer-trace.js';

/**
 * Runs before every test file (vitest's `setupFiles`). With `isolate: false`
 * a worker's test files share one process and its modules, so whatever a file
 * leaves behind — an environment variable, a changed working directory, a
 * signal handler, fake timers, `process.exitCode` — is the next file's
 * starting point. This file records that process-wide state before the file
 * runs and, after the file's own `afterAll` hooks (vitest runs after-hooks in
 * reverse order, so these run last), fails the file that did not put it
 * back, naming what it left.
 *
 * `LABVIRT_TEST_LEFTOVERS=report` also prints the file's change in active
 * handles (servers, sockets, timers, child processes) a second after it ends.
 * That part only reports: a handle closing a moment late is not a fault. It
 * names where each timer still running was made.
 */

function countBy(items: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return counts;
}

// Taken when this file runs, before the test file is imported: a change its
// imports or top-level code make counts too.
const before = captureProcessState();
const reporting = process.env.LABVIRT_TEST_LEFTOVERS === 'report';
const timersBefore = reporting ? traceTimers() : new Set<number>();

afterAll(async () => {
  const problems = leftoversBetween(before, captureProcessState());
  if (vi.isFakeTimers()) problems.push('fake timers left on (vi.useRealTimers())');
  // Put it back for the next file either way, so one fault is reported once.
  for (const name of Object.keys(process.env)) {
    if (!(name in before.env)) delete process.env[name];
  }
  for (const [name, value] of Object.entries(before.env)) {
    if (value !== undefined) process.env[name] = value;
  }
  if (process.cwd() !== before.cwd) process.chdir(before.cwd);
  process.exitCode = before.exitCode;
  vi.useRealTimers();
  restoreGlobals(before.globals);
  if (reporting) {
    await new Promise((r) => setTimeout(r, 1000));
    const was = countBy(before.resources);
    const now = countBy(process.getActiveResourcesInfo());
    const grown = [...now]
      .filter(([type, n]) => n > (was.get(type) ?? 0))
      .map(([type, n]) => `${type} +${n - (was.get(type) ?? 0)}`);
    const file = expect.getState().testPath ?? 'a test file';
    if (grown.length) console.warn(`[leftovers] ${file}: active handles ${grown.join(', ')}`);
    for (const timer of timersSince(timersBefore)) console.warn(`[leftovers] ${file}: ${timer}`);
    if (problems.length) console.warn(`[leftovers] ${file}: ${problems.join('; ')}`);
  }
  if (problems.length > 0) {
    throw new Error(
      `this test file left process-wide state behind for the next file in its worker ` +
        `(isolate: false, docs/testing.md): ${problems.join('; ')}`,
    );
  }
});
