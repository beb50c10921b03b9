import { configDefaults, defineConfig } from 'vitest/config';
import { SmokeFirstSequencer } from './test/helpers/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The benches' smoke run (test/bench/) is part of the suite, started first
    // beside the rest (the sequencer below); LABVIRT_BENCH_SMOKE=0 leaves it
    // out (docs/benchmarks.md, "Smoke run and suite, seventh pass").
    exclude:
      process.env.LABVIRT_BENCH_SMOKE === '0'
        ? [...configDefaults.exclude, 'test/bench/**']
        : configDefaults.exclude,
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll waits for what a user would see; 1 s (vitest's default) is
    // too short on a loaded 2-core machine.
    expect: { poll: { timeout: 15_000 } },
    // The benches' smoke run, when included, starts first, beside the rest.
    sequence: { sequencer: SmokeFirstSequencer },
    // Tests start real servers (Redis, the simulator, SSH guests) and mostly
    // wait on them: on two cores the whole suite used 1.1 cores with 2
    // workers (772 s) and 1.3 with 3 (670 s, every test passing). More would
    // starve the servers.
    pool: 'forks',
    maxWorkers: 3,
    // A worker's test files share its modules: each file used to import the
    // app afresh (client-node, kubernetes-models: thousands of modules, 3–7 s
    // of CPU a file). Files that change process-wide state put it back, and
    // one that needs a fresh module says so (test/sim-guest/shim.test.ts).
    // test/sim + test/api: 393 s → 163 s wall, 188 → 101 s of CPU (load 15–19).
    isolate: false,
  },
});
