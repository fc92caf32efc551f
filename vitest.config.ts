import { defineConfig } from 'vitest/config';

// Tests that measure time on the event loop (`*.timing.test.ts`) run after all the others, one
// file at a time: on a 2-core machine, files running beside them would starve the process they
// time, and their bounds would measure the neighbours instead of the server.
const TIMING = 'tests/**/*.timing.test.ts';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // The JSON report is what .ci/run counts; the default reporter is for people.
    reporters: ['default', ['json', { outputFile: 'test-results/report.json' }]],
    pool: 'forks',
    globalSetup: ['tests/helpers/global-setup.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['tests/**/*.test.ts'],
          exclude: [TIMING],
          typecheck: { enabled: true, include: ['tests/**/*.test-d.ts'], tsconfig: './tsconfig.json' },
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: 'timing', include: [TIMING], fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
