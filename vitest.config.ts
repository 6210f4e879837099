import { defineConfig } from 'vitest/config';

// Tests spawn real processes (the built exporter, Prometheus, promtool), so they get
// generous timeouts; files still run in parallel, each on its own loopback ports.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Schedules' intervals are counted on the local clock, daylight saving time included:
    // the tests expect UTC's, wherever they run.
    env: { TZ: 'UTC' },
  },
});
