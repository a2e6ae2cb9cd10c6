import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Clerk's SDK prints a telemetry notice with test keys; keep it quiet and offline.
    env: { CLERK_TELEMETRY_DISABLED: '1' },
  },
});
