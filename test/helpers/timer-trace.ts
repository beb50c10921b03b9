import { createHook } from 'node:async_hooks';

/**
 * Where each live timer of this process was made: for the leftovers report
 * (`LABVIRT_TEST_LEFTOVERS=report`, test/helpers/leftovers.ts), which names
 * the timers a test file left running. One hook per process, however many
 * test files load this module (they share the worker).
 */
interface TracedTimer {
  timer: NodeJS.Timeout;
  stack: string;
}

const TRACKER = Symbol.for('labvirt.test.timer-trace');

function tracked(): Map<number, TracedTimer> {
  const holder = globalThis as Record<symbol, Map<number, TracedTimer> | undefined>;
  let live = holder[TRACKER];
  if (live) return live;
  const timers = new Map<number, TracedTimer>();
  createHook({
    init(id, type, _trigger, resource) {
      if (type !== 'Timeout') return;
      const stack = (new Error().stack ?? '')
        .split('\n')
        .slice(2)
        .filter((line) => !line.includes('node:internal') && !line.includes('(node:timers'))
        .slice(0, 6)
        .join('\n');
      timers.set(id, { timer: resource as NodeJS.Timeout, stack });
    },
    destroy(id) {
      timers.delete(id);
    },
  }).enable();
  holder[TRACKER] = live = timers;
  return live;
}

/** Starts tracing (once per process); returns the ids of the timers live now. */
export function traceTimers(): Set<number> {
  return new Set(tracked().keys());
}

/** Timers made since `known` that still keep the process up, with where each was made. */
export function timersSince(known: Set<number>): string[] {
  const out: string[] = [];
  for (const [id, { timer, stack }] of tracked()) {
    if (known.has(id)) continue;
    const t = timer as NodeJS.Timeout & { _destroyed?: boolean; _idleTimeout?: number };
    if (t._destroyed || !t.hasRef()) continue;
    out.push(`a ${t._idleTimeout} ms timer made\n${stack}`);
  }
  return out;
}
