import { z } from "zod";
import {
  presentRun,
  RunManager,
  runIdSchema,
  runListSchema,
  runStatusSchema,
  runViewSchema,
  type RunConfig,
} from "../task/index.js";
import { defineTool, type Tool, type ToolOutput } from "../server/tool.js";
import { isBackgroundId, type BackgroundCommands } from "../sandbox/background.js";
import { backgroundSummary, backgroundView } from "../sandbox/background-view.js";

export interface TaskConfig extends RunConfig {
  /** Seconds a Task call waits for its run before returning "running"; null waits until the end. */
  taskWaitSeconds: number | null;
  /** Background commands: read and stopped through TaskOutput/TaskStop, stopped when the Task run that started them ends. */
  background?: BackgroundCommands;
}

/** A Task run's id, or a background command's (bg-…). */
const runOrCommandId = z.union([runIdSchema, z.string().regex(/^bg-[0-9a-z-]{1,64}$/)], {
  error:
    "is not a run id (like 20260130-075600-1a2b3c, as returned by Task) nor a background command id (like bg-1a2b3c4d)",
});

/** Fields of a background command's view that a Task run's view lacks. */
const backgroundExtra = {
  ...backgroundView
    .omit({ kind: true, run_id: true, status: true, message: true, description: true, duration_ms: true })
    .partial().shape,
  kind: z
    .enum(["state", "report", "background_command"])
    .optional()
    .describe('"report" when a run has ended, "state" while it goes on, "background_command" for a bg-… id'),
  run_id: z.string().optional().describe("The run (20260130-075600-1a2b3c) or background command (bg-…)"),
  status: z.union([runStatusSchema, backgroundView.shape.status]).optional(),
};

const MAX_WAIT_MS = 2 ** 31 - 1;
const OUTPUT_WAIT_DEFAULT = 30;
const OUTPUT_WAIT_MAX = 45;

export function createTaskTools(config: TaskConfig): Tool[] {
  const runs = new RunManager(config);
  return [taskTool(runs, config), taskOutputTool(runs, config), taskStopTool(runs, config)];
}

const taskInput = z.object({
  description: z
    .string()
    .min(1)
    .max(120)
    .optional()
    .describe("A short (3-5 word) description of the task; required unless resuming"),
  prompt: z
    .string()
    .min(1)
    .describe(
      "The full task for the agent: what to build or change, constraints, and how to know it is done. When resuming: the follow-up instruction or the answer to its question",
    ),
  subagent_type: z
    .string()
    .default("backend-developer")
    .describe("Which agent to run: backend-developer (default) or one defined in the workspace's .claude/agents/"),
  max_turns: z
    .number()
    .int()
    .min(1)
    .max(500)
    .default(40)
    .describe("Most model turns before the run stops (default 40)"),
  model: z
    .string()
    .optional()
    .describe("Model to use (default: the agent's model, else BACKEND_AGENT_MODEL, else a current Sonnet)"),
  max_budget_usd: z
    .number()
    .positive()
    .optional()
    .describe("Stop the run when its estimated cost reaches this many US dollars"),
  run_in_background: z
    .boolean()
    .default(false)
    .describe("Return at once with a run_id instead of waiting; follow the run with TaskOutput"),
  isolation: z
    .enum(["worktree"])
    .optional()
    .describe(
      '"worktree": work in a separate git worktree, leaving the workspace untouched; the report says how to merge',
    ),
  resume: runIdSchema
    .optional()
    .describe(
      "run_id of an ended run to continue with prompt as the next instruction (same conversation and checkpoint)",
    ),
});

function taskTool(runs: RunManager, config: TaskConfig): Tool {
  return defineTool({
    name: "Task",
    title: "Delegate a backend task",
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    input: taskInput,
    output: runViewSchema,
    async handle(args, ctx) {
      const live = await runs.start(args, ctx);
      config.background?.adoptTaskRun(live.abort.signal, live.done);
      // Until this call returns, cancelling it stops the run; afterwards only TaskStop does.
      const onAbort = () => live.abort.abort();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        const waitMs = args.run_in_background
          ? 0
          : config.taskWaitSeconds === null
            ? MAX_WAIT_MS
            : config.taskWaitSeconds * 1000;
        const ended = waitMs > 0 && (await runs.wait(live, waitMs, ctx.progress));
        return presentRun(ended || ctx.signal.aborted ? await live.done : live.state);
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  });
}

function taskOutputTool(runs: RunManager, config: TaskConfig): Tool {
  return defineTool({
    name: "TaskOutput",
    title: "Follow a Task run",
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    input: z.object({
      run_id: runOrCommandId.optional().describe("The run or background command to report on; omit to list them all"),
      wait_seconds: z
        .number()
        .min(0)
        .max(OUTPUT_WAIT_MAX)
        .default(OUTPUT_WAIT_DEFAULT)
        .describe(
          `Seconds to wait for a running run to end (default ${OUTPUT_WAIT_DEFAULT}, at most ${OUTPUT_WAIT_MAX})`,
        ),
    }),
    output: runViewSchema
      .partial()
      .extend(runListSchema.partial().shape)
      .extend({
        background: z
          .array(backgroundSummary)
          .optional()
          .describe("Background commands started with Run {run_in_background: true}"),
        ...backgroundExtra,
      }),
    async handle({ run_id, wait_seconds }, ctx) {
      const root = ctx.ws.root;
      if (run_id && config.background && isBackgroundId(run_id))
        return config.background.output(run_id, wait_seconds * 1000, ctx.signal);
      if (!run_id) return listRuns(runs, config.background, root);
      const live = runs.getLive(run_id);
      if (live && wait_seconds > 0) await runs.wait(live, wait_seconds * 1000, ctx.progress, ctx.signal);
      return presentRun(await runs.view(root, run_id));
    },
  });
}

function taskStopTool(runs: RunManager, config: TaskConfig): Tool {
  return defineTool({
    name: "TaskStop",
    title: "Stop a Task run",
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    input: z.object({ run_id: runOrCommandId.describe("The run or background command to stop") }),
    output: runViewSchema.partial().extend(backgroundExtra),
    async handle({ run_id }, ctx) {
      if (config.background && isBackgroundId(run_id)) return config.background.stopById(run_id);
      return presentRun(await runs.stop(ctx.ws.root, run_id));
    },
  });
}

/** TaskOutput without run_id: the workspace's runs (unreadable ones named), then the background commands. */
async function listRuns(runs: RunManager, commands: BackgroundCommands | undefined, root: string): Promise<ToolOutput> {
  const { runs: list, unreadable, totals } = await runs.list(root);
  const rows = list.map(
    (r) => `- ${r.run_id} [${r.status}] ${r.description} (${r.agent}, ${r.turns} turns, $${r.cost_usd.toFixed(4)})`,
  );
  rows.push(...unreadable.map((u) => `- ${u.name} [unreadable] ${u.reason}`));
  const shown = list.length < totals.runs ? ` The newest ${list.length} are listed.` : "";
  const bad = unreadable.length ? ` ${unreadable.length} unreadable (not used).` : "";
  const message = `${totals.runs} runs in this workspace; estimated cost $${totals.cost_usd.toFixed(4)} over ${totals.model_calls} model calls.${shown}${bad}`;
  // Background commands are listed after the runs.
  const background = commands?.list() ?? [];
  const bgRows = background.map(
    (b) => `- ${b.run_id} [${b.status}${b.exit_code === null ? "" : ` ${b.exit_code}`}] ${b.command.slice(0, 100)}`,
  );
  const bgText = background.length ? `\n\n${background.length} background commands:\n${bgRows.join("\n")}` : "";
  return {
    text: `${message}\n${rows.join("\n") || "No runs yet."}${bgText}`,
    structured: { runs: list, unreadable, totals, message, background },
  };
}
