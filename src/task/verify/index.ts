import os from "node:os";
import type { GitDir } from "../git.js";
import type { Tool, ToolContext } from "../../server/tool.js";
import { baselineResults, checkpointReader, groupByProject } from "./baseline.js";
import { compareCheck } from "./compare.js";
import { allProjects, planChecks, touchedProjects, type CheckSpec } from "./detect.js";
import { runProjectChecks, type ExecOptions, type RawResult } from "./exec.js";
import { renderBrief } from "./render.js";
import type { CheckResult, Verification } from "./schema.js";

export { failureReport, renderChecks } from "./render.js";
export { CONFIG_FILE, checkResultSchema, verificationSchema, type CheckResult, type Verification } from "./schema.js";

export interface VerifyOptions {
  ctx: ToolContext;
  run: Tool;
  /** Paths (relative to the workspace) the run changed, deleted ones included. */
  changed: string[];
  /** The checkpoint (a commit in the server's git directory, repo), for telling the run's failures from those already there. */
  checkpoint?: { repo: GitDir; commit: string };
  /** --test-command: replaces the root project's test check. */
  testCommand?: string;
  /** The sandbox's private temp folder (writable by commands, readable by the server). */
  tmpdir?: string;
}

const NOTHING_TO_CHECK =
  "Nothing could be checked: no changed file is in a project with a manifest (package.json, pyproject.toml, setup.cfg, setup.py, requirements*.txt, go.mod, Cargo.toml, pom.xml, build.gradle), and the workspace commits no backend-agent.checks.json.";

async function runChecks(specs: CheckSpec[], o: ExecOptions): Promise<RawResult[]> {
  const results: RawResult[] = [];
  for (const group of groupByProject(specs)) {
    o.ctx.progress(`verifying ${group[0]!.project}: ${group.map((s) => s.command).join(", ")}`);
    results.push(...(await runProjectChecks(group, o)));
  }
  return results;
}

function outcomeOf(checks: CheckResult[]): Verification["outcome"] {
  if (checks.some((c) => c.newly_failing.length)) return "failed";
  return checks.every((c) => c.result === "not_run") ? "unverified" : "passed";
}

/** The server's own checks of the work, never the model's word for it; failures already there at the checkpoint are told apart. */
export async function verify(o: VerifyOptions): Promise<Verification> {
  const started = Date.now();
  const root = o.ctx.ws.root;
  const done = (v: Omit<Verification, "duration_ms" | "passed">): Verification => ({
    ...v,
    passed: v.outcome !== "failed",
    duration_ms: Date.now() - started,
  });
  let specs: CheckSpec[];
  try {
    const before = o.checkpoint ? checkpointReader(o.checkpoint.repo, o.checkpoint.commit) : undefined;
    specs = await planChecks(root, await touchedProjects(root, o.changed), o.testCommand, before);
  } catch (e) {
    return done({ outcome: "unverified", checks: [], note: (e as Error).message });
  }
  if (!specs.length) return done({ outcome: "unverified", checks: [], note: NOTHING_TO_CHECK });
  const exec: ExecOptions = { run: o.run, ctx: o.ctx, tmpdir: o.tmpdir ?? os.tmpdir() };
  const now = await runChecks(specs, exec);
  const failing = now.filter((r) => r.result === "failed").map((r) => r.spec);
  let note: string | undefined;
  let before = new Map<CheckSpec, RawResult>();
  if (failing.length && o.checkpoint) {
    o.ctx.progress("verifying: the failing checks at the checkpoint, to tell failures that were already there");
    before = await baselineResults(failing, o.checkpoint.repo, o.checkpoint.commit, exec).catch((e: Error) => {
      note = `The checkpoint could not be checked (${e.message}); every failure is counted as the run's.`;
      return new Map();
    });
  } else if (failing.length) note = "No checkpoint to compare with; every failure is counted as the run's.";
  const checks = await Promise.all(now.map((r) => compareCheck(r, before.get(r.spec))));
  const outcome = outcomeOf(checks);
  if (outcome === "unverified") note ??= "No check could run: see each check's reason.";
  return done({ outcome, checks, ...(note && { note }) });
}

/** What the sub-agent is told about the checks the server will run in this workspace. */
export async function checksBrief(root: string, testCommand?: string): Promise<string> {
  try {
    return renderBrief(await planChecks(root, await allProjects(root), testCommand));
  } catch (e) {
    return renderBrief([], (e as Error).message);
  }
}
