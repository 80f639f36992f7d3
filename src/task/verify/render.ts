import { WHOLE_CHECK } from "./compare.js";
import type { CheckSpec } from "./detect.js";
import type { CheckResult, Verification } from "./schema.js";

const LIST_LIMIT = 20;
const indent = (s: string, by = "    ") => s.replace(/^/gm, by);
const list = (items: string[]) =>
  items.slice(0, LIST_LIMIT).join(", ") + (items.length > LIST_LIMIT ? `, … (${items.length - LIST_LIMIT} more)` : "");
const where = (c: { project: string; command: string }) =>
  `\`${c.command}\` in ${c.project === "." ? "the workspace root" : c.project}`;

function checkLine(c: CheckResult): string {
  const time = `${(c.duration_ms / 1000).toFixed(1)} s`;
  if (c.result === "not_run") return `- ${c.name}: NOT RUN (${c.reason ?? "no reason given"}): ${where(c)}`;
  if (c.result === "passed")
    return `- ${c.name}: passed (${time}): ${where(c)}${c.newly_passing.length ? `\n    newly passing: ${list(c.newly_passing)}` : ""}`;
  const verdict = c.newly_failing.length
    ? `FAILED, broken by this run (${time})`
    : `failed, but only as before the run (${time})`;
  return [
    `- ${c.name}: ${verdict}: ${where(c)}`,
    ...(c.newly_failing.length ? [`    newly failing: ${list(c.newly_failing)}`] : []),
    ...(c.failed_before.length ? [`    failed before the run too (pre-existing): ${list(c.failed_before)}`] : []),
    ...(c.newly_passing.length ? [`    newly passing: ${list(c.newly_passing)}`] : []),
    ...(c.details ? [indent(c.details, "      ")] : []),
  ].join("\n");
}

/** A check as older reports stored it ({name, command, passed, details}) in today's shape. */
const upgrade = (c: CheckResult & { passed?: boolean }): CheckResult => ({
  ...c,
  project: c.project ?? ".",
  command: c.command ?? c.name,
  result: c.result ?? (c.passed ? "passed" : "failed"),
  duration_ms: c.duration_ms ?? 0,
  newly_failing: c.newly_failing ?? (c.passed === false ? [WHOLE_CHECK] : []),
  newly_passing: c.newly_passing ?? [],
  failed_before: c.failed_before ?? [],
  details: c.details ?? "",
});

/** The report's "Verification by the server" section (reports written before per-check comparison lack the lists). */
export function renderChecks(v: Verification | null): string {
  if (!v) return "- not run";
  const lines = v.checks.map((c) => checkLine(upgrade(c)));
  if (v.note) lines.push(`- note: ${v.note}`);
  return lines.join("\n") || "- nothing was checked";
}

/** The fix-round message: only what the run broke; failures that were already there are left out. */
export function failureReport(v: Verification): string {
  const broken = v.checks
    .filter((c) => c.newly_failing.length)
    .map((c) => `### ${c.name}: ${where(c)}\nNewly failing: ${list(c.newly_failing)}\n\n${c.details}`);
  const before = v.checks.reduce((n, c) => n + c.failed_before.length, 0);
  const leave = before
    ? `\n\n(${before} failure(s) that were already there before your run are not listed: they are not yours to fix here; leave them alone.)`
    : "";
  return `The server ran its own checks after your summary, and your changes broke these:\n\n${broken.join("\n\n")}${leave}\n\nFix the cause (not the checks), run them again with Run, then give your final summary.`;
}

/** The sub-agent's instructions: which checks the server will run, so it runs them itself before it claims to be done. */
export function renderBrief(specs: CheckSpec[], problem?: string): string {
  const head = "## How the server will check your work\n";
  if (problem)
    return `${head}The workspace's check configuration is invalid, so the server cannot verify your work: ${problem}`;
  if (!specs.length) {
    return `${head}The server found no project manifest (package.json, pyproject.toml, go.mod, Cargo.toml, pom.xml, build.gradle) and no committed checks, so it cannot verify your work itself: say in your summary exactly how you checked it.`;
  }
  const byProject = new Map<string, string[]>();
  for (const s of specs) byProject.set(s.project, [...(byProject.get(s.project) ?? []), `\`${s.command}\``]);
  const rows = [...byProject].map(([p, cmds]) => `- ${p === "." ? "workspace root" : p}: ${cmds.join(", ")}`);
  return `${head}After your final summary, the server runs these checks itself (sandboxed, offline) on every project your changes touch:\n${rows.join("\n")}\nRun them yourself with Run before you finish. Failures that were already there before your run do not count against you: leave unrelated failures alone.`;
}
