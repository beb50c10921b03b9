import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll waits for what a user would see; 1 s (vitest's default) is
    // too short on a loaded 2-core machine.
    expect: { poll: { timeout: 15_000 } },
    // Tests start real servers (Redis, the simulator, SSH guests); two cores
    // means a small pool keeps them from starving each other.
    pool: 'forks',
    maxWorkers: 2,
  },
});
