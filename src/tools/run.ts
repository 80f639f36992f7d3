import { z } from "zod";
import {
  type CommandConfig,
  CommandNotStarted,
  type CommandResult,
  commandResultSchema,
  runCommand,
} from "../sandbox/command.js";
import { ToolError } from "../server/errors.js";
import { defineTool, type Tool, type ToolContext, type ToolOutput } from "../server/tool.js";
import { Semaphore } from "../util/semaphore.js";

const MAX_COMMAND_CHARS = 100_000;

export interface RunConfig extends CommandConfig {
  maxConcurrent: number;
  /** Starts `run_in_background` commands; absent: the option is refused. */
  background?: { start(command: string, description: string | undefined, ctx: ToolContext): Promise<ToolOutput> };
}

const input = z.object({
  command: z
    .string()
    .min(1, "command is empty: give a shell command to run")
    .max(MAX_COMMAND_CHARS, `command is over ${MAX_COMMAND_CHARS} characters; put long scripts in a file and run that`)
    .describe("The shell command to run"),
  timeout: z
    .number()
    .int()
    .min(1)
    .max(600_000)
    .default(120_000)
    .describe("Milliseconds before the command is killed (default 120000, at most 600000)"),
  description: z.string().optional().describe("A short description of what the command does (5-10 words)"),
  run_in_background: z
    .boolean()
    .default(false)
    .describe(
      "Start the command and return at once with a run_id; read its output with TaskOutput, stop it with TaskStop",
    ),
});

const output = commandResultSchema.extend({
  run_id: z.string().optional().describe("With run_in_background: the id to pass to TaskOutput and TaskStop"),
});
export type RunResult = z.infer<typeof output>;

export function createRunTool(config: RunConfig): Tool {
  const slots = new Semaphore(config.maxConcurrent);
  return defineTool({
    name: "Run",
    title: "Run shell command",
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    input,
    output,
    async handle({ command, timeout, description, run_in_background }, ctx) {
      if (!command.trim()) throw new ToolError("command is blank: give a shell command to run.");
      if (run_in_background) {
        if (!config.background)
          throw new ToolError("run_in_background is not available here; run the command in the foreground.");
        return config.background.start(command, description, ctx);
      }
      const release = await slots.acquire(ctx.signal).catch(() => {
        throw new ToolError("Cancelled while waiting for a free command slot; nothing ran.");
      });
      try {
        const result = await runCommand(config, command, timeout, ctx).catch((e: unknown) => {
          throw e instanceof CommandNotStarted ? new ToolError(e.message) : e;
        });
        return { text: renderRun(result, timeout), structured: result };
      } finally {
        config.sandbox.done();
        release();
      }
    },
  });
}

export function renderRun(r: CommandResult, timeout: number): string {
  const status = r.timed_out
    ? `Timed out after ${timeout} ms; the command and its child processes were killed.`
    : r.cancelled
      ? "Cancelled; the command and its child processes were killed."
      : r.signal
        ? `Killed by ${r.signal}.`
        : `Exit code ${r.exit_code}.`;
  return `${r.output || "(no output)"}\n\n[${status} ${r.duration_ms} ms${r.sandboxed ? ", sandboxed" : ""}]`;
}
