import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Tests start real servers (Redis, the simulator, SSH guests); two cores
    // means a small pool keeps them from starving each other.
    pool: 'forks',
    maxWorkers: 2,
  },
});
