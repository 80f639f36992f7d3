import type { RawResult } from "./exec.js";
import { findingsFor, type Findings } from "./parse.js";
import type { CheckResult } from "./schema.js";

/** A failing check where nothing finer could be read stands for itself, so it matches the same failure at the checkpoint. */
export const WHOLE_CHECK = "(the check as a whole)";
const DETAILS_CHARS = 4_000;
/** Items listed per array, so a report with thousands of old lint errors stays within a tool result's size. */
const LIST_MAX = 100;
const capped = (items: string[]) =>
  items.length > LIST_MAX ? [...items.slice(0, LIST_MAX), `… and ${items.length - LIST_MAX} more`] : items;
const TAIL_CHARS = 4_000;
const tail = (s: string) => (s.length > TAIL_CHARS ? `…${s.slice(-TAIL_CHARS)}` : s);

async function failures(r: RawResult): Promise<Findings | undefined> {
  if (r.result !== "failed") return undefined;
  const f = await findingsFor(r.spec.parser, r.output, r.reports);
  if (!f.failed.size)
    f.failed.set(
      WHOLE_CHECK,
      tail(`exit code ${r.exitCode ?? "?"}${r.reason ? ` (${r.reason})` : ""}\n${r.output.trim()}`),
    );
  return f;
}

/**
 * The check as reported: what failed now and not at the checkpoint is the run's (newly_failing), what failed at both is
 * pre-existing (failed_before), what failed only at the checkpoint is newly passing. Without a baseline every failure is the run's.
 */
export async function compareCheck(now: RawResult, before: RawResult | undefined): Promise<CheckResult> {
  const base: CheckResult = {
    name: now.spec.name,
    project: now.spec.project,
    command: now.spec.command,
    result: now.result,
    duration_ms: now.durationMs,
    ...(now.reason && { reason: now.reason }),
    newly_failing: [],
    newly_passing: [],
    failed_before: [],
    details: "",
  };
  const after = await failures(now);
  const earlier =
    before && before.result !== "not_run" ? ((await failures(before))?.failed ?? new Map<string, string>()) : undefined;
  if (!after) {
    if (earlier) base.newly_passing = capped([...earlier.keys()].filter((k) => k !== WHOLE_CHECK));
    return base;
  }
  const keys = [...after.failed.keys()];
  base.newly_failing = keys.filter((k) => !earlier?.has(k));
  base.failed_before = keys.filter((k) => earlier?.has(k));
  base.newly_passing = earlier ? [...earlier.keys()].filter((k) => k !== WHOLE_CHECK && !after.failed.has(k)) : [];
  const details = base.newly_failing
    .map((k) => (k === WHOLE_CHECK ? after.failed.get(k)! : `${k}\n${after.failed.get(k) ?? ""}`.trim()))
    .join("\n\n")
    .slice(0, DETAILS_CHARS);
  return {
    ...base,
    details,
    newly_failing: capped(base.newly_failing),
    failed_before: capped(base.failed_before),
    newly_passing: capped(base.newly_passing),
  };
}
