// The text a Task, TaskOutput or TaskStop call returns for a run: its report, or its state while it goes on. The
// structured result carries the same fields, plus this text's first line as its message.
import type { RunState, TaskReport } from "./records.js";
import { renderChecks } from "./verify/index.js";

const STATUS_LINE: Record<string, string> = {
  completed: "Completed: the server's checks passed, or failed only as they did before the run.",
  verification_failed:
    "Finished, but the server's checks found failures this run introduced, still there after the fix rounds.",
  unverified: "Finished, but UNVERIFIED: the server could not run any check on this work (see why below).",
  refused: "NOT completed: the model refused to go on with the task (its words are in the summary).",
  max_turns: "Stopped at the turn limit before the agent finished.",
  budget_exhausted: "Stopped: the token, cost or time budget ran out.",
  cancelled: "Cancelled.",
  error: "Stopped by an error.",
  needs_input:
    "Paused: the agent needs an answer from the user. Resume with Task {resume: run_id, prompt: <the answer>}.",
  interrupted:
    "Interrupted: the server stopped while this run was in progress. Its changes are in the workspace; resume it, or revert with the command below.",
};

const stillRunning = (s: RunState) =>
  `Task ${s.run_id} is ${s.status} (${s.activity}). It goes on in the background: call TaskOutput {run_id: "${s.run_id}"} to wait for its report, or TaskStop to stop it.`;

export function renderReport(r: TaskReport): string {
  const files = r.files_changed.length
    ? r.files_changed.map((f) => `- ${f.path} (${f.status}, +${f.insertions} -${f.deletions})`).join("\n")
    : "- none";
  const checks = renderChecks(r.verification);
  const u = r.usage;
  return [
    `Task ${r.run_id} [${r.status}] ${STATUS_LINE[r.status] ?? ""}${r.error ? `\nError: ${r.error}` : ""}`,
    ...(r.question
      ? [
          `\n## Question for the user\n${r.question.question}${r.question.options ? `\nOptions: ${r.question.options.join(" | ")}` : ""}`,
        ]
      : []),
    `\n## Summary from the agent (${r.agent}, ${r.model})\n${r.summary || "(none)"}`,
    ...(r.children?.length
      ? [
          `\n## Delegated to partner agents (checked by this run's verification)\n${r.children.map((c) => `- ${c.agent} [${c.status}] ${c.description} (${c.turns} turns, $${c.cost_usd.toFixed(4)}): ${c.summary.split("\n")[0] || "(no summary)"}`).join("\n")}`,
        ]
      : []),
    `\n## Files changed\n${files}`,
    `\n## Verification by the server\n${checks}`,
    `\n## Run\n- turns: ${r.turns}, fix rounds: ${r.fix_rounds}, model calls: ${r.model_calls}, wall time: ${(r.duration_ms / 1000).toFixed(1)} s`,
    `- tokens: input ${u.input_tokens}, output ${u.output_tokens}, cache read ${u.cache_read_input_tokens}, cache write ${u.cache_creation_input_tokens}${u.thinking_tokens ? ` (thinking ${u.thinking_tokens} of the output)` : ""}${u.web_search_requests || u.web_fetch_requests ? `; web searches ${u.web_search_requests ?? 0}, fetches ${u.web_fetch_requests ?? 0}` : ""}; estimated cost $${r.cost_usd.toFixed(4)}`,
    `- transcript: ${r.transcript}`,
    `- checkpoint: ${r.checkpoint ?? "none"}`,
    ...(r.merge_command ? [`- merge into the workspace: ${r.merge_command}`] : []),
    `- revert: ${r.revert_command}`,
    ...r.notes.map((n) => `- note: ${n}`),
  ].join("\n");
}

export function presentRun(v: TaskReport | RunState): { text: string; structured: Record<string, unknown> } {
  if (v.kind === "report") {
    const text = renderReport(v);
    return { text, structured: { ...v, message: text.split("\n")[0]! } };
  }
  const s = v;
  const message = stillRunning(s);
  return {
    text: `${message}\nTurn ${s.turn}/${s.max_turns}; tokens so far: ${s.usage.input_tokens} in, ${s.usage.output_tokens} out; estimated cost $${s.cost_usd.toFixed(4)}.`,
    structured: { ...s, message },
  };
}
