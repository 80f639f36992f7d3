import { z } from "zod";
import { backgroundSummary, backgroundView, isBackgroundId, type BackgroundCommands } from "../background.js";
import { ENDED, RunManager, type RunConfig, type RunState, type TaskReport } from "../runs.js";
import { defineTool, type Tool, type ToolOutput } from "../tool.js";

export interface TaskConfig extends RunConfig {
  /** Seconds a Task call waits for its run before returning "running"; null waits until the end. */
  taskWaitSeconds: number | null;
  /** [background] Background commands: read and stopped through TaskOutput/TaskStop, stopped when the Task run that started them ends. */
  background?: BackgroundCommands;
}

/** [background] Fields of a background command's view that a Task run's view lacks. */
const backgroundExtra = backgroundView.omit({ run_id: true, status: true, message: true, description: true, duration_ms: true }).partial().shape;

const MAX_WAIT_MS = 2 ** 31 - 1;
const OUTPUT_WAIT_DEFAULT = 30;
const OUTPUT_WAIT_MAX = 45;

const usage = z.object({ input_tokens: z.number(), output_tokens: z.number(), cache_read_input_tokens: z.number(), cache_creation_input_tokens: z.number() });
const check = z.object({ name: z.string(), command: z.string().optional(), passed: z.boolean(), details: z.string() });
const runView = z.object({
  run_id: z.string(),
  status: z.string().describe("queued | running | completed | verification_failed | max_turns | budget_exhausted | cancelled | error | needs_input | interrupted"),
  message: z.string().describe("What the status means and what to do next"),
  description: z.string(),
  agent: z.string(),
  model: z.string(),
  usage,
  cost_usd: z.number().describe("Estimated from the price table in prices.json"),
  model_calls: z.number(),
  summary: z.string().optional().describe("The agent's own summary; the status comes from the server's checks"),
  files_changed: z.array(z.object({ path: z.string(), status: z.enum(["added", "modified", "deleted"]), insertions: z.number(), deletions: z.number() })).optional(),
  verification: z.object({ passed: z.boolean(), checks: z.array(check), note: z.string().optional() }).nullable().optional(),
  turns: z.number().optional(),
  fix_rounds: z.number().optional(),
  duration_ms: z.number().optional(),
  transcript: z.string().optional(),
  checkpoint: z.string().optional(),
  revert_command: z.string().optional(),
  isolation: z.enum(["none", "worktree"]),
  merge_command: z.string().optional(),
  question: z.object({ question: z.string(), options: z.array(z.string()).optional() }).optional(),
  error: z.string().optional(),
  notes: z.array(z.string()).optional(),
  turn: z.number().optional(),
  max_turns: z.number().optional(),
  activity: z.string().optional(),
  workdir: z.string().optional(),
  server_pid: z.number().optional(),
  created_at: z.string().optional(),
  updated_at: z.string().optional(),
});

const STATUS_LINE: Record<string, string> = {
  completed: "Completed, and the server's checks passed.",
  verification_failed: "Finished, but the server's checks FAILED after the fix rounds.",
  max_turns: "Stopped at the turn limit before the agent finished.",
  budget_exhausted: "Stopped: the token, cost or time budget ran out.",
  cancelled: "Cancelled.",
  error: "Stopped by an error.",
  needs_input: "Paused: the agent needs an answer from the user. Resume with Task {resume: run_id, prompt: <the answer>}.",
  interrupted: "Interrupted: the server stopped while this run was in progress. Its changes are in the workspace; resume it, or revert with the command below.",
};

const stillRunning = (s: RunState) =>
  `Task ${s.run_id} is ${s.status} (${s.activity}). It goes on in the background: call TaskOutput {run_id: "${s.run_id}"} to wait for its report, or TaskStop to stop it.`;

export function renderReport(r: TaskReport): string {
  const files = r.files_changed.length ? r.files_changed.map((f) => `- ${f.path} (${f.status}, +${f.insertions} -${f.deletions})`).join("\n") : "- none";
  const checks = r.verification
    ? r.verification.checks.map((c) => `- ${c.name}${c.command ? ` (${c.command})` : ""}: ${c.passed ? "passed" : `FAILED\n${c.details.replace(/^/gm, "    ")}`}`).join("\n") || `- ${r.verification.note}`
    : "- not run";
  const u = r.usage;
  return [
    `Task ${r.run_id} [${r.status}] ${STATUS_LINE[r.status] ?? ""}${r.error ? `\nError: ${r.error}` : ""}`,
    ...(r.question ? [`\n## Question for the user\n${r.question.question}${r.question.options ? `\nOptions: ${r.question.options.join(" | ")}` : ""}`] : []),
    `\n## Summary from the agent (${r.agent}, ${r.model})\n${r.summary || "(none)"}`,
    `\n## Files changed\n${files}`,
    `\n## Verification by the server\n${checks}`,
    `\n## Run\n- turns: ${r.turns}, fix rounds: ${r.fix_rounds}, model calls: ${r.model_calls}, wall time: ${(r.duration_ms / 1000).toFixed(1)} s`,
    `- tokens: input ${u.input_tokens}, output ${u.output_tokens}, cache read ${u.cache_read_input_tokens}, cache write ${u.cache_creation_input_tokens}; estimated cost $${r.cost_usd.toFixed(4)}`,
    `- transcript: ${r.transcript}`,
    `- checkpoint: ${r.checkpoint}`,
    ...(r.merge_command ? [`- merge into the workspace: ${r.merge_command}`] : []),
    `- revert: ${r.revert_command}`,
    ...r.notes.map((n) => `- note: ${n}`),
  ].join("\n");
}

function present(v: TaskReport | RunState): ToolOutput {
  if (ENDED.includes(v.status) && "summary" in v) {
    const text = renderReport(v);
    return { text, structured: { ...v, message: text.split("\n")[0]! } };
  }
  const s = v as RunState;
  const message = stillRunning(s);
  return { text: `${message}\nTurn ${s.turn}/${s.max_turns}; tokens so far: ${s.usage.input_tokens} in, ${s.usage.output_tokens} out; estimated cost $${s.cost_usd.toFixed(4)}.`, structured: { ...s, message } };
}

export function createTaskTools(config: TaskConfig): Tool[] {
  const runs = new RunManager(config);
  const task = defineTool({
    name: "Task",
    title: "Delegate a backend task",
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    input: z.object({
      description: z.string().min(1).max(120).optional().describe("A short (3-5 word) description of the task; required unless resuming"),
      prompt: z.string().min(1).describe("The full task for the agent: what to build or change, constraints, and how to know it is done. When resuming: the follow-up instruction or the answer to its question"),
      subagent_type: z.string().default("backend-developer").describe("Which agent to run: backend-developer (default) or one defined in the workspace's .claude/agents/"),
      max_turns: z.number().int().min(1).max(500).default(40).describe("Most model turns before the run stops (default 40)"),
      model: z.string().optional().describe("Model to use (default: the agent's model, else BACKEND_AGENT_MODEL, else a current Sonnet)"),
      max_budget_usd: z.number().positive().optional().describe("Stop the run when its estimated cost reaches this many US dollars"),
      run_in_background: z.boolean().default(false).describe("Return at once with a run_id instead of waiting; follow the run with TaskOutput"),
      isolation: z.enum(["worktree"]).optional().describe('"worktree": work in a separate git worktree, leaving the workspace untouched; the report says how to merge'),
      resume: z.string().optional().describe("run_id of an ended run to continue with prompt as the next instruction (same conversation and checkpoint)"),
    }),
    output: runView,
    async handle(args, ctx) {
      const live = await runs.start(args, ctx);
      config.background?.adoptTaskRun(live.abort.signal, live.done); // [background] hook
      // Until this call returns, cancelling it stops the run; afterwards only TaskStop does.
      const onAbort = () => live.abort.abort();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        const waitMs = args.run_in_background ? 0 : config.taskWaitSeconds === null ? MAX_WAIT_MS : config.taskWaitSeconds * 1000;
        const ended = waitMs > 0 && (await runs.wait(live, waitMs, ctx.progress));
        return present(ended || ctx.signal.aborted ? await live.done : live.state);
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  });

  const output = defineTool({
    name: "TaskOutput",
    title: "Follow a Task run",
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    input: z.object({
      run_id: z.string().optional().describe("The run to report on; omit to list the runs of this workspace"),
      wait_seconds: z.number().min(0).max(OUTPUT_WAIT_MAX).default(OUTPUT_WAIT_DEFAULT).describe(`Seconds to wait for a running run to end (default ${OUTPUT_WAIT_DEFAULT}, at most ${OUTPUT_WAIT_MAX})`),
    }),
    output: runView.partial().extend({
      runs: z.array(z.object({ run_id: z.string(), status: z.string(), description: z.string(), agent: z.string(), model: z.string(), cost_usd: z.number(), model_calls: z.number(), turns: z.number() })).optional(),
      totals: z.object({ runs: z.number(), usage, cost_usd: z.number(), model_calls: z.number() }).optional(),
      background: z.array(backgroundSummary).optional().describe("Background commands started with Run {run_in_background: true}"),
      ...backgroundExtra,
    }),
    async handle({ run_id, wait_seconds }, ctx) {
      const root = ctx.ws.root;
      if (run_id && config.background && isBackgroundId(run_id)) return config.background.output(run_id, wait_seconds * 1000, ctx.signal); // [background] hook
      if (!run_id) {
        const { runs: list, totals } = await runs.list(root);
        const rows = list.map((r) => `- ${r.run_id} [${r.status}] ${r.description} (${r.agent}, ${r.turns} turns, $${r.cost_usd.toFixed(4)})`);
        const shown = list.length < totals.runs ? ` The newest ${list.length} are listed.` : "";
        const message = `${totals.runs} runs in this workspace; estimated cost $${totals.cost_usd.toFixed(4)} over ${totals.model_calls} model calls.${shown}`;
        // [background] hook: background commands are listed after the runs.
        const background = config.background?.list() ?? [];
        const bgRows = background.map((b) => `- ${b.run_id} [${b.status}${b.exit_code === null ? "" : ` ${b.exit_code}`}] ${b.command.slice(0, 100)}`);
        const bgText = background.length ? `\n\n${background.length} background commands:\n${bgRows.join("\n")}` : "";
        return { text: `${message}\n${rows.join("\n") || "No runs yet."}${bgText}`, structured: { runs: list, totals, message, background } };
      }
      const live = runs.getLive(run_id);
      if (live && wait_seconds > 0) await runs.wait(live, wait_seconds * 1000, ctx.progress, ctx.signal);
      return present(await runs.view(root, run_id));
    },
  });

  const stop = defineTool({
    name: "TaskStop",
    title: "Stop a Task run",
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    input: z.object({ run_id: z.string().min(1).describe("The run to stop") }),
    output: runView.partial().extend(backgroundExtra),
    async handle({ run_id }, ctx) {
      if (config.background && isBackgroundId(run_id)) return config.background.stopById(run_id); // [background] hook
      return present(await runs.stop(ctx.ws.root, run_id));
    },
  });
  return [task, output, stop];
}
