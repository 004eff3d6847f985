import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Process-level tests start servers and kill them; forks isolate them from each other.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
