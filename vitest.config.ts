import { configDefaults, defineConfig } from 'vitest/config';
import { SmokeFirstSequencer } from './test/helpers/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The benches' smoke run (test/bench/) only when asked
    // (LABVIRT_BENCH_SMOKE=1, `npm run test:smoke`): beside the suite it took
    // npm test to 13–15 min on 2 shared cores (docs/benchmarks.md).
    exclude: process.env.LABVIRT_BENCH_SMOKE
      ? configDefaults.exclude
      : [...configDefaults.exclude, 'test/bench/**'],
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
  },
});
