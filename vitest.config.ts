import { configDefaults, defineConfig } from 'vitest/config';
import { SmokeFirstSequencer } from './test/helpers/sequencer.js';

const withSmokeRun = process.env.LABVIRT_BENCH_SMOKE === '1';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The benches' smoke run (test/bench/) is included with
    // LABVIRT_BENCH_SMOKE=1: `npm run test:smoke` runs it alone, and `npm
    // test` runs that after the suite. Not beside the suite: in two whole runs
    // beside it on 2 cores a load-sensitive test failed each time
    // (pool/recovery twice, slack/dev-socket-mode once), none without it
    // (docs/benchmarks.md, "Smoke run and suite, seventh pass").
    exclude: withSmokeRun ? configDefaults.exclude : [...configDefaults.exclude, 'test/bench/**'],
    globalSetup: ['test/global-setup.ts'],
    // Fails a file that leaves process-wide state for the next file in its
    // worker (isolate: false, below; docs/testing.md).
    setupFiles: ['test/helpers/leftovers.ts'],
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
    // starve the servers. The smoke test's worker only waits for its child
    // (which runs at `nice` 10), so with it in the run there is one more.
    pool: 'forks',
    maxWorkers: withSmokeRun ? 4 : 3,
    // A worker's test files share its modules: each file used to import the
    // app afresh (client-node, kubernetes-models: thousands of modules, 3–7 s
    // of CPU a file). Files that change process-wide state put it back, and
    // one that needs a fresh module says so (test/sim-guest/shim.test.ts).
    // test/sim + test/api: 393 s → 163 s wall, 188 → 101 s of CPU (load 15–19).
    isolate: false,
  },
});
