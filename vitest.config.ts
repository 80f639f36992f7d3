import { defineConfig } from "vitest/config";

/** End-to-end files: whole packages, bundles and plugins, durable runs, real toolchains and services, attack loops. */
const END_TO_END = [
  "test/package.test.ts",
  "test/plugin.test.ts",
  "test/bench.test.ts",
  "test/demo.test.ts",
  "test/durable.test.ts",
  "test/task.test.ts",
  "test/api.test.ts",
  "test/verify-stacks.test.ts",
  "test/verify.test.ts",
  "test/services.test.ts",
  "test/cancel.test.ts",
  "test/race.test.ts",
  "test/hostile-git.test.ts",
  "test/attack-review.test.ts",
  "test/background.test.ts",
  "test/network.test.ts",
];

const shared = { testTimeout: 60_000, hookTimeout: 30_000 };

export default defineConfig({
  test: {
    projects: [
      { test: { ...shared, name: "fast", include: ["test/**/*.test.ts"], exclude: END_TO_END } },
      { test: { ...shared, name: "e2e", include: END_TO_END } },
    ],
  },
});
