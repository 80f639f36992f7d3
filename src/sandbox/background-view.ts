// What TaskOutput and TaskStop show of a background command (one schema, one text), and the sub-agent's own pair of
// tools, which see only the commands its run started.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { packageRoot } from "../paths.js";
import { defineTool, type Tool, type ToolOutput } from "../server/tool.js";
import type { BackgroundCommands } from "./background.js";

export const backgroundView = z.object({
  run_id: z.string(),
  kind: z.literal("background_command"),
  status: z
    .enum(["running", "exited", "killed"])
    .describe("running; exited (by itself: see exit_code); killed (see stop_reason)"),
  message: z.string().describe("What the status means and what to do next"),
  command: z.string(),
  description: z.string().optional(),
  output: z
    .string()
    .describe("Output printed since the previous TaskOutput of this command, ANSI stripped, at most 30,000 characters"),
  omitted_chars: z.number().describe("Characters of that new output left out in the middle"),
  total_bytes: z.number().describe("Bytes of output since the command started"),
  exit_code: z.number().nullable(),
  signal: z.string().nullable(),
  stop_reason: z.enum(["TaskStop", "lifetime", "task ended", "server exit"]).optional(),
  started_at: z.string(),
  duration_ms: z.number(),
});
export type BackgroundView = z.infer<typeof backgroundView>;

export const backgroundSummary = backgroundView.pick({
  run_id: true,
  status: true,
  command: true,
  description: true,
  exit_code: true,
  started_at: true,
  total_bytes: true,
});
export type BackgroundSummary = z.infer<typeof backgroundSummary>;

export function describe(v: BackgroundView): string {
  const seconds = `${(v.duration_ms / 1000).toFixed(1)} s`;
  if (v.status === "running")
    return `Background command ${v.run_id} is running (${seconds}). Call TaskOutput {run_id: "${v.run_id}"} again for new output; TaskStop stops it.`;
  if (v.status === "killed")
    return `Background command ${v.run_id} was stopped (${v.stop_reason}) after ${seconds}; its process tree is gone.`;
  return `Background command ${v.run_id} exited with ${v.signal ? `signal ${v.signal}` : `code ${v.exit_code}`} after ${seconds}.`;
}

export function present(v: BackgroundView): ToolOutput {
  const more = v.omitted_chars ? ` (${v.omitted_chars} characters left out in the middle)` : "";
  const body = v.output ? `${v.output}${more}` : "(no new output)";
  return { text: `${body}\n\n[${v.message} ${v.total_bytes} bytes of output in all.]`, structured: v };
}

/** Run's answer when it started a background command: the id, how to follow it, and when it ends by itself. */
export function startedOutput(id: string, sandboxed: boolean, lifetimeMs: number, owned: boolean): ToolOutput {
  const minutes = Math.round(lifetimeMs / 60_000);
  const lifetime = minutes >= 120 ? `${Math.round(minutes / 6) / 10} hours` : `${minutes} minutes`;
  const text = [
    `Started in the background as ${id}${sandboxed ? " (sandboxed)" : ""}.`,
    `Read its output with TaskOutput {run_id: "${id}"}; stop it with TaskStop {run_id: "${id}"}.`,
    `It is stopped after ${lifetime}, when the server exits${owned ? ", and when this Task run ends" : ""}.`,
  ].join(" ");
  const structured = {
    output: "",
    exit_code: null,
    signal: null,
    timed_out: false,
    cancelled: false,
    duration_ms: 0,
    omitted_chars: 0,
    sandboxed,
    run_id: id,
  };
  return { text, structured };
}

/** TaskOutput/TaskStop for a sub-agent: only the background commands its own run started. */
export function backgroundToolsForAgents(background: BackgroundCommands): Tool[] {
  const description = (name: string) => readFileSync(`${packageRoot}/tools/${name}.agent.md`, "utf8").trim();
  const output = defineTool({
    name: "TaskOutput",
    title: "Read a background command",
    annotations: { readOnlyHint: true, openWorldHint: false },
    input: z.object({
      run_id: z.string().optional().describe("The background command (bg-…) to read; omit to list yours"),
      wait_seconds: z
        .number()
        .min(0)
        .max(45)
        .default(10)
        .describe("Seconds to wait for new output or the end when there is none yet (default 10, at most 45)"),
    }),
    async handle({ run_id, wait_seconds }, ctx) {
      if (!run_id) {
        const list = background.list(ctx.signal);
        return {
          text:
            list.map((c) => `- ${c.run_id} [${c.status}] ${c.command}`).join("\n") ||
            "No background commands started by this run.",
        };
      }
      return background.output(run_id, wait_seconds * 1000, ctx.signal, ctx.signal);
    },
  });
  const stop = defineTool({
    name: "TaskStop",
    title: "Stop a background command",
    annotations: { readOnlyHint: false, destructiveHint: true, openWorldHint: false },
    input: z.object({ run_id: z.string().min(1).describe("The background command (bg-…) to stop") }),
    handle: ({ run_id }, ctx) => background.stopById(run_id, ctx.signal),
  });
  return [
    { ...output, description: description("TaskOutput") },
    { ...stop, description: description("TaskStop") },
  ];
}
