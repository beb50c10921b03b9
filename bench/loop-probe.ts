/**
 * An idle process's event loop, for bench/sync.bench.ts: a child with
 * nothing to do but a 10 ms timer, measured between 'start' and 'stop'
 * (IPC): how late any process's event loop runs on this machine at the
 * moment (the share of a delay that is the machine's, not labvirt's). A file
 * of its own so that its start loads only Node's modules (as a mode of the
 * sync bench it loaded client-node and labvirt's modules first).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** An event-loop delay histogram's p50/p99/max in milliseconds. */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}

export function loopDelayOf(h: IntervalHistogram): LoopDelay {
  return { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
}

function probe(): void {
  const h = monitorEventLoopDelay({ resolution: 10 });
  process.on('message', (m: 'start' | 'stop') => {
    if (m === 'start') {
      h.reset();
      h.enable();
    } else {
      h.disable();
      process.send!(loopDelayOf(h));
    }
  });
  process.once('disconnect', () => process.exit(0));
}

// Forked (bench/sync.bench.ts imports only the type and loopDelayOf).
if (process.argv[1] === import.meta.filename && process.send) probe();
