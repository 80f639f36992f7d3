import { z } from "zod";

/** One check the server ran (or could not run) on one project, compared with the checkpoint where it failed. */
export const checkResultSchema = z.object({
  name: z
    .string()
    .describe(
      "What kind of check: test, lint, typecheck, build, tsc, pytest, ruff, mypy, go build, go vet, go test, cargo check, cargo test, …",
    ),
  project: z.string().describe("The project folder, relative to the workspace ('.' for the root)"),
  command: z.string().describe("The command, run in the project folder"),
  result: z.enum(["passed", "failed", "not_run"]),
  duration_ms: z.number(),
  reason: z.string().optional().describe("Why the check did not run, e.g. 'go: not installed'"),
  newly_failing: z
    .array(z.string())
    .describe("Tests or diagnostics that fail now and did not before the run: what the run broke"),
  newly_passing: z.array(z.string()).describe("Tests or diagnostics that failed before the run and no longer do"),
  failed_before: z
    .array(z.string())
    .describe("Failures that were already there at the checkpoint (pre-existing; not the run's)"),
  details: z.string().describe("Output about the newly failing items (empty when the run broke nothing here)"),
});
export type CheckResult = z.infer<typeof checkResultSchema>;

export const verificationSchema = z.object({
  outcome: z
    .enum(["passed", "failed", "unverified"])
    .describe(
      "passed: nothing the run broke; failed: the run introduced failures; unverified: nothing could be checked",
    ),
  passed: z.boolean().describe("true unless the run introduced failures"),
  checks: z.array(checkResultSchema),
  note: z.string().optional().describe("Why nothing was checked, or how the baseline was taken"),
  duration_ms: z.number().describe("Wall time of the whole verification, baseline included"),
});
export type Verification = z.infer<typeof verificationSchema>;

/** How a check's output is read: per test, per diagnostic line, or only by its exit code. */
export const parserSchema = z.enum(["tests", "diagnostics", "exit-code"]);
export type ParserName = z.infer<typeof parserSchema> | "junit" | "go-json" | "cargo-test";

/** The checks a repository commits at its root, replacing detection. */
export const CONFIG_FILE = "backend-agent.checks.json";
export const checksConfigSchema = z.strictObject({
  checks: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(60),
        command: z.string().min(1).max(2_000),
        folder: z.string().default(".").describe("Project folder, relative to the workspace root"),
        parse: parserSchema
          .default("exit-code")
          .describe(
            "tests: per test (TAP, node:test, vitest, jest, pytest -rA, go test -v, cargo test); diagnostics: per output line minus line numbers; exit-code: the check as a whole",
          ),
      }),
    )
    .min(1)
    .max(30),
});
export type ChecksConfig = z.infer<typeof checksConfigSchema>;
