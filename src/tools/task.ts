import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { runAgent, type AgentStatus } from "../agent.js";
import { changes, ensureRepo, revertCommand, RUNS_DIR, setRef, snapshot, type FileChange } from "../git.js";
import { chooseBackend, DEFAULT_MODEL } from "../model.js";
import { loadAgents } from "../prompts.js";
import { defineTool, type Tool, type ToolContext } from "../tool.js";
import { verify, type Verification } from "../verify.js";
import { ToolError } from "../workspace.js";

export interface TaskConfig {
  /** The tools the sub-agent may use (never Task itself). */
  tools: Tool[];
  testCommand?: string;
  maxTokens: number;
  timeoutMs: number;
}

const MODEL_ALIASES: Record<string, string> = { sonnet: "claude-sonnet-5-5", opus: "claude-opus-5-5", haiku: "claude-haiku-5-5" };
const FIX_ROUNDS = 2;

const usage = z.object({ input_tokens: z.number(), output_tokens: z.number(), cache_read_input_tokens: z.number(), cache_creation_input_tokens: z.number() });
const check = z.object({ name: z.string(), command: z.string().optional(), passed: z.boolean(), details: z.string() });
const report = z.object({
  run_id: z.string(),
  status: z.enum(["completed", "verification_failed", "max_turns", "budget_exhausted", "cancelled", "error"]),
  agent: z.string(),
  model: z.string(),
  summary: z.string().describe("The agent's own summary; the status comes from the server's checks"),
  files_changed: z.array(z.object({ path: z.string(), status: z.enum(["added", "modified", "deleted"]), insertions: z.number(), deletions: z.number() })),
  verification: z.object({ passed: z.boolean(), checks: z.array(check), note: z.string().optional() }).nullable(),
  usage,
  turns: z.number(),
  fix_rounds: z.number(),
  duration_ms: z.number(),
  transcript: z.string().describe("Path of the JSONL transcript, relative to the workspace"),
  checkpoint: z.string().describe("Git ref of the workspace state before the task"),
  revert_command: z.string(),
  error: z.string().optional(),
  notes: z.array(z.string()),
});
export type TaskReport = z.infer<typeof report>;

const STATUS_LINE: Record<AgentStatus, string> = {
  completed: "Completed, and the server's checks passed.",
  verification_failed: "Finished, but the server's checks FAILED after the fix rounds.",
  max_turns: "Stopped at the turn limit before the agent finished.",
  budget_exhausted: "Stopped: the token or time budget ran out.",
  cancelled: "Cancelled by the client.",
  error: "Stopped by an error.",
};

export function renderReport(r: TaskReport): string {
  const files = r.files_changed.length ? r.files_changed.map((f) => `- ${f.path} (${f.status}, +${f.insertions} -${f.deletions})`).join("\n") : "- none";
  const checks = r.verification
    ? r.verification.checks.map((c) => `- ${c.name}${c.command ? ` (${c.command})` : ""}: ${c.passed ? "passed" : `FAILED\n${c.details.replace(/^/gm, "    ")}`}`).join("\n") || `- ${r.verification.note}`
    : "- not run";
  const u = r.usage;
  return [
    `Task ${r.run_id} [${r.status}] ${STATUS_LINE[r.status]}${r.error ? `\nError: ${r.error}` : ""}`,
    `\n## Summary from the agent (${r.agent}, ${r.model})\n${r.summary || "(none)"}`,
    `\n## Files changed\n${files}`,
    `\n## Verification by the server\n${checks}`,
    `\n## Run\n- turns: ${r.turns}, fix rounds: ${r.fix_rounds}, wall time: ${(r.duration_ms / 1000).toFixed(1)} s`,
    `- tokens: input ${u.input_tokens}, output ${u.output_tokens}, cache read ${u.cache_read_input_tokens}, cache write ${u.cache_creation_input_tokens}`,
    `- transcript: ${r.transcript}`,
    `- checkpoint: ${r.checkpoint}`,
    `- revert: ${r.revert_command}`,
    ...r.notes.map((n) => `- note: ${n}`),
  ].join("\n");
}

function newRunId(): string {
  return `${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-")}-${randomBytes(3).toString("hex")}`;
}

export function createTaskTool(config: TaskConfig): Tool {
  return defineTool({
    name: "Task",
    title: "Delegate a backend task",
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    input: z.object({
      description: z.string().min(1).max(120).describe("A short (3-5 word) description of the task"),
      prompt: z.string().min(1).describe("The full task for the agent: what to build or change, constraints, and how to know it is done"),
      subagent_type: z.string().default("backend-developer").describe("Which agent to run: backend-developer (default) or one defined in the workspace's .claude/agents/"),
      max_turns: z.number().int().min(1).max(500).default(40).describe("Most model turns before the run stops (default 40)"),
      model: z.string().optional().describe("Model to use (default: the agent's model, else BACKEND_AGENT_MODEL, else a current Sonnet)"),
    }),
    output: report,
    async handle(args, ctx) {
      const r = await runTask(config, args, ctx);
      return { text: renderReport(r), structured: r };
    },
  });
}

async function runTask(config: TaskConfig, args: { description: string; prompt: string; subagent_type: string; max_turns: number; model?: string }, ctx: ToolContext): Promise<TaskReport> {
  const root = ctx.ws.root;
  const agents = await loadAgents(root);
  const agent = agents.get(args.subagent_type);
  if (!agent) throw new ToolError(`Unknown subagent_type "${args.subagent_type}". Known agents: ${[...agents.keys()].join(", ")}. Define more in .claude/agents/<name>.md.`);
  const requested = args.model ?? agent.model ?? process.env.BACKEND_AGENT_MODEL ?? DEFAULT_MODEL;
  const backend = await chooseBackend(MODEL_ALIASES[requested] ?? requested, ctx.server);
  const tools = config.tools.filter((t) => t.name !== "Task" && (!agent.tools || agent.tools.includes(t.name)));

  const started = Date.now();
  const runId = newRunId();
  const notes: string[] = [];
  ctx.progress("checkpoint");
  if ((await ensureRepo(root)).initialised) notes.push("The workspace was not a git repository; one was initialised for the checkpoint.");
  const checkpoint = `refs/backend-agent/${runId}`;
  const before = await snapshot(root, `backend-agent checkpoint before ${runId}: ${args.description}`);
  await setRef(root, checkpoint, before);

  const runDir = path.join(root, RUNS_DIR, "runs", runId);
  await fs.mkdir(runDir, { recursive: true });
  const transcript = path.join(runDir, "transcript.jsonl");
  let written = Promise.resolve();
  const record = (event: Record<string, unknown>) => {
    const line = `${JSON.stringify({ t: new Date().toISOString(), ...event })}\n`;
    written = written.then(() => fs.appendFile(transcript, line)).catch(() => undefined);
  };
  record({ type: "start", run_id: runId, agent: agent.name, model: backend.model, backend: backend.kind, description: args.description, prompt: args.prompt, checkpoint });

  const changedNow = async (): Promise<FileChange[]> => changes(root, before, await snapshot(root, `backend-agent state during ${runId}`));
  const run = config.tools.find((t) => t.name === "Run");
  const outcome = await runAgent({
    backend,
    system: agent.systemPrompt,
    tools,
    ctx,
    prompt: args.prompt,
    maxTurns: args.max_turns,
    maxTokens: config.maxTokens,
    deadline: started + config.timeoutMs,
    fixRounds: FIX_ROUNDS,
    record,
    verify: async (): Promise<Verification> => {
      if (!run) return { passed: true, checks: [], note: "Run is not available, so no checks could be run." };
      return verify(ctx, run, (await changedNow()).filter((c) => c.status !== "deleted").map((c) => c.path), config.testCommand);
    },
  });

  const filesChanged = await changedNow();
  const result: TaskReport = {
    run_id: runId,
    status: outcome.status,
    agent: agent.name,
    model: backend.model,
    summary: outcome.summary,
    files_changed: filesChanged,
    verification: outcome.verification ?? null,
    usage: outcome.usage,
    turns: outcome.turns,
    fix_rounds: outcome.fixRounds,
    duration_ms: Date.now() - started,
    transcript: path.relative(root, transcript),
    checkpoint,
    revert_command: revertCommand(root, checkpoint, filesChanged),
    ...(outcome.error && { error: outcome.error }),
    notes,
  };
  record({ type: "report", ...result });
  await written;
  await fs.writeFile(path.join(runDir, "report.json"), JSON.stringify(result, null, 2));
  return result;
}
