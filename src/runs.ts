import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { continueConversation, runAgent, type AgentStatus } from "./agent.js";
import { addWorktree, changes, ensureRepo, mergeCommand, revertCommand, RUNS_DIR, setRef, shellQuote, snapshot, type FileChange } from "./git.js";
import { chooseBackend, DEFAULT_MODEL, emptyUsage, type Message, type Usage } from "./model.js";
import { loadAgents, type Agent } from "./prompts.js";
import type { Tool, ToolContext } from "./tool.js";
import ask from "./tools/ask.js";
import { checksBrief, verify, type Verification } from "./verify/index.js";
import { Semaphore } from "./semaphore.js";
import { ToolError, Workspace, writeFileAtomic } from "./workspace.js";

/** Durable Task runs: each lives in .backend-agent/runs/<id>/ (state, conversation, transcript, report) so nothing is only in memory. */

export type RunStatus = "queued" | "running" | "interrupted" | AgentStatus;
export const ENDED: RunStatus[] = ["completed", "verification_failed", "unverified", "max_turns", "budget_exhausted", "cancelled", "error", "needs_input", "interrupted"];

export interface RunConfig {
  tools: Tool[];
  testCommand?: string;
  /** The sandbox's private temp folder, where checks keep caches and reports. */
  checksTmpdir?: string;
  maxTokens: number;
  timeoutMs: number;
  maxBudgetUsd?: number;
  maxRuns: number;
}

export interface TaskRequest {
  description?: string;
  prompt: string;
  subagent_type: string;
  max_turns: number;
  model?: string;
  max_budget_usd?: number;
  isolation?: "worktree";
  resume?: string;
}

export interface RunState {
  run_id: string;
  status: RunStatus;
  description: string;
  agent: string;
  model: string;
  isolation: "none" | "worktree";
  /** Where the agent works: the workspace, or its worktree. */
  workdir: string;
  checkpoint?: string;
  server_pid: number;
  created_at: string;
  updated_at: string;
  turn: number;
  max_turns: number;
  activity: string;
  usage: Usage;
  cost_usd: number;
  model_calls: number;
}

export interface TaskReport {
  run_id: string;
  status: RunStatus;
  description: string;
  agent: string;
  model: string;
  summary: string;
  files_changed: FileChange[];
  verification: Verification | null;
  usage: Usage;
  cost_usd: number;
  model_calls: number;
  turns: number;
  fix_rounds: number;
  duration_ms: number;
  transcript: string;
  checkpoint: string;
  revert_command: string;
  isolation: "none" | "worktree";
  merge_command?: string;
  question?: { question: string; options?: string[] };
  error?: string;
  notes: string[];
}

/** The tools an agent may call: all (and AskUserQuestion) unless its definition lists them. */
const toolsFor = (agent: Agent, all: Tool[]) => [...all, ask].filter((t) => !agent.tools || agent.tools.includes(t.name));

const MODEL_ALIASES: Record<string, string> = { sonnet: "claude-sonnet-5-5", opus: "claude-opus-5-5", haiku: "claude-haiku-5-5" };
const FIX_ROUNDS = 2;
const LIST_LIMIT = 50;
const HEARTBEAT_MS = 5_000;

const runsDir = (root: string) => path.join(root, RUNS_DIR, "runs");
const runDir = (root: string, id: string) => path.join(runsDir(root), id);
const readJson = <T>(file: string): Promise<T | undefined> => fs.readFile(file, "utf8").then((t) => JSON.parse(t) as T, () => undefined);

async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2));
}

function newRunId(): string {
  return `${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-")}-${randomBytes(3).toString("hex")}`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface LiveRun {
  root: string;
  state: RunState;
  releases: (() => void)[];
  /** State writes, chained so a late one never lands after the final one. */
  saved: Promise<void>;
  abort: AbortController;
  done: Promise<TaskReport>;
  listeners: Set<(message: string) => void>;
}

export class RunManager {
  private readonly live = new Map<string, LiveRun>();
  /** Runs without a worktree take turns on their workspace. */
  private readonly workspaces = new Map<string, Semaphore>();
  private readonly slots: Semaphore;

  constructor(private readonly config: RunConfig) {
    this.slots = new Semaphore(config.maxRuns);
  }

  /** Starts a run (or resumes an ended one) detached from any request; returns at once. */
  async start(req: TaskRequest, ctx: ToolContext): Promise<LiveRun> {
    const root = ctx.ws.root;
    if (req.resume) return this.resume(req, ctx);
    if (!req.description) throw new ToolError("description is required (a 3-5 word label for the task).");
    const agents = await loadAgents(root);
    const agent = agents.get(req.subagent_type);
    if (!agent) throw new ToolError(`Unknown subagent_type "${req.subagent_type}". Known agents: ${[...agents.keys()].join(", ")}. Define more in .claude/agents/<name>.md.`);
    const requested = req.model ?? agent.model ?? process.env.BACKEND_AGENT_MODEL ?? DEFAULT_MODEL;
    const backend = await chooseBackend(MODEL_ALIASES[requested] ?? requested, ctx.server);
    const id = newRunId();
    await fs.mkdir(runDir(root, id), { recursive: true });
    const now = new Date().toISOString();
    const state: RunState = {
      run_id: id, status: "queued", description: req.description, agent: agent.name, model: backend.model,
      isolation: req.isolation === "worktree" ? "worktree" : "none", workdir: root, server_pid: process.pid,
      created_at: now, updated_at: now, turn: 0, max_turns: req.max_turns, activity: "queued",
      usage: emptyUsage(), cost_usd: 0, model_calls: 0,
    };
    await writeJson(path.join(runDir(root, id), "state.json"), state);
    const tools = toolsFor(agent, this.config.tools);
    return this.launch(root, state, ctx, { backend, system: await this.systemPrompt(agent, root), tools, messages: [{ role: "user", content: req.prompt }], budgetUsd: req.max_budget_usd });
  }

  /** The agent's definition, plus (for an agent that can Run) which checks the server will run here, so it runs them first. */
  private async systemPrompt(agent: Agent, root: string): Promise<string> {
    if (agent.tools && !agent.tools.includes("Run")) return agent.systemPrompt;
    return `${agent.systemPrompt}\n\n${await checksBrief(root, this.config.testCommand)}`;
  }

  private async resume(req: TaskRequest, ctx: ToolContext): Promise<LiveRun> {
    const root = ctx.ws.root;
    const id = req.resume!;
    if (this.live.has(id) || this.resuming.has(id)) throw new ToolError(`Run ${id} is still running: wait for it with TaskOutput, or stop it with TaskStop, before resuming.`);
    this.resuming.add(id);
    try {
      return await this.prepareResume(req, ctx, root, id);
    } finally {
      this.resuming.delete(id);
    }
  }

  private readonly resuming = new Set<string>();

  private async prepareResume(req: TaskRequest, ctx: ToolContext, root: string, id: string): Promise<LiveRun> {
    const prev = await this.view(root, id);
    if (!("summary" in prev)) throw new ToolError(`Run ${id} is ${prev.status} in another server process; it cannot be resumed here.`);
    const saved = await readJson<Message[]>(path.join(runDir(root, id), "messages.json"));
    if (!saved) throw new ToolError(`Run ${id} has no saved conversation to resume.`);
    const agents = await loadAgents(root);
    const agent = agents.get(prev.agent);
    if (!agent) throw new ToolError(`Run ${id} used agent "${prev.agent}", which no longer exists.`);
    const backend = await chooseBackend(prev.model, ctx.server, true);
    const state = (await readJson<RunState>(path.join(runDir(root, id), "state.json")))!;
    Object.assign(state, { status: "queued", server_pid: process.pid, max_turns: prev.turns + req.max_turns, activity: "queued (resume)", updated_at: new Date().toISOString() });
    const tools = toolsFor(agent, this.config.tools);
    return this.launch(root, state, ctx, { backend, system: await this.systemPrompt(agent, root), tools, messages: continueConversation(saved, req.prompt), budgetUsd: req.max_budget_usd, previous: prev });
  }

  private launch(root: string, state: RunState, ctx: ToolContext, prepared: Prepared): LiveRun {
    const live: LiveRun = { root, state, releases: [], saved: Promise.resolve(), abort: new AbortController(), listeners: new Set(), done: undefined as unknown as Promise<TaskReport> };
    this.live.set(state.run_id, live);
    live.done = this.execute(live, ctx, prepared).finally(() => this.live.delete(state.run_id));
    // A run in the background has no caller to see a failure: never let it become an unhandled rejection.
    live.done.catch((e: Error) => process.stderr.write(`run ${state.run_id} failed: ${e.stack ?? e}\n`));
    return live;
  }

  /** Waits (abortably) for the workspace, unless the run has its own worktree, then for a run slot. */
  private async acquire(live: LiveRun): Promise<void> {
    const signal = live.abort.signal;
    if (live.state.isolation === "none") {
      const turn = this.workspaces.get(live.root) ?? new Semaphore(1);
      this.workspaces.set(live.root, turn);
      if (turn.busy) this.note(live, "queued: another run is changing this workspace");
      live.releases.push(await turn.acquire(signal));
    }
    if (this.slots.busy) this.note(live, `queued: ${this.config.maxRuns} runs in progress (at most ${this.config.maxRuns} at once)`);
    live.releases.push(await this.slots.acquire(signal));
  }

  private note(live: LiveRun, activity: string): void {
    live.state.activity = activity;
    for (const l of live.listeners) l(activity);
  }

  private persist(live: LiveRun): Promise<void> {
    const file = path.join(runDir(live.root, live.state.run_id), "state.json");
    live.saved = live.saved.then(() => writeJson(file, { ...live.state, updated_at: new Date().toISOString() })).catch(() => undefined);
    return live.saved;
  }

  /** Takes the checkpoint (and the worktree) once the run may start. */
  private async setup(live: LiveRun): Promise<string[]> {
    const { root, state } = live;
    const notes: string[] = [];
    if (!state.checkpoint) {
      if ((await ensureRepo(root)).initialised) notes.push("The workspace was not a git repository; one was initialised for the checkpoint.");
      const ref = `refs/backend-agent/${state.run_id}`;
      await setRef(root, ref, await snapshot(root, `backend-agent checkpoint before ${state.run_id}: ${state.description}`));
      state.checkpoint = ref;
      if (state.isolation === "worktree") {
        state.workdir = await addWorktree(root, state.checkpoint, path.join(root, RUNS_DIR, "worktrees", state.run_id));
        notes.push(`Worked in the git worktree ${state.workdir}; the workspace itself was not changed.`);
      }
    }
    return notes;
  }

  private async execute(live: LiveRun, ctx: ToolContext, prepared: Prepared): Promise<TaskReport> {
    const { root, state } = live;
    const dir = runDir(root, state.run_id);
    let started = Date.now();
    let written = Promise.resolve();
    const record = (event: Record<string, unknown>) => {
      const line = `${JSON.stringify({ t: new Date().toISOString(), run_id: state.run_id, ...event })}\n`;
      written = written.then(() => fs.appendFile(path.join(dir, "transcript.jsonl"), line)).catch(() => undefined);
    };
    try {
      await this.acquire(live);
      const notes = await this.setup(live);
      if (prepared.backend.kind === "sampling") notes.push("Token and cost budgets are not enforced: MCP sampling reports no token usage.");
      started = Date.now();
      state.status = "running";
      await this.persist(live);
      record({ type: "start", agent: state.agent, model: state.model, backend: prepared.backend.kind, resumed: Boolean(prepared.previous), last_message: prepared.messages.at(-1) });

      // One Workspace per folder: the client's and the agent's edits of a file share its lock and read stamps.
      const ws = state.workdir === root ? ctx.ws : await Workspace.open(state.workdir);
      const runCtx: ToolContext = {
        ws,
        signal: live.abort.signal,
        server: ctx.server,
        progress: (m) => this.note(live, m),
        ask: (question, options) => this.ask(ctx, question, options),
      };
      const run = this.config.tools.find((t) => t.name === "Run");
      const changedNow = async () => changes(state.workdir, state.checkpoint!, await snapshot(state.workdir, `backend-agent state of ${state.run_id}`));
      const prev = prepared.previous;
      const outcome = await runAgent({
        backend: prepared.backend,
        system: prepared.system,
        tools: prepared.tools,
        ctx: runCtx,
        messages: prepared.messages,
        spent: { usage: prev?.usage ?? emptyUsage(), modelCalls: prev?.model_calls ?? 0, turns: prev?.turns ?? 0 },
        budget: { maxTurns: state.max_turns, maxTokens: this.config.maxTokens, maxCostUsd: prepared.budgetUsd ?? this.config.maxBudgetUsd, deadline: started + this.config.timeoutMs },
        fixRounds: FIX_ROUNDS,
        record,
        saveMessages: (messages) => writeJson(path.join(dir, "messages.json"), messages),
        onTurn: (t) => {
          Object.assign(state, { turn: t.turn, activity: t.activity, usage: t.usage, cost_usd: t.costUsd, model_calls: t.modelCalls });
          void this.persist(live);
        },
        verify: async () => {
          if (!run) return { outcome: "unverified", passed: true, checks: [], note: "Run is not available, so no checks could be run.", duration_ms: 0 };
          const changed = (await changedNow()).map((c) => c.path);
          return verify({ ctx: runCtx, run, changed, checkpoint: state.checkpoint, testCommand: this.config.testCommand, tmpdir: this.config.checksTmpdir });
        },
      });
      await live.saved;
      const report = await this.finish(root, state, {
        status: outcome.status, summary: outcome.summary, verification: outcome.verification ?? null, usage: outcome.usage, cost_usd: outcome.costUsd,
        model_calls: outcome.modelCalls, turns: outcome.turns, fix_rounds: (prev?.fix_rounds ?? 0) + outcome.fixRounds, duration_ms: (prev?.duration_ms ?? 0) + Date.now() - started,
        question: outcome.question, error: outcome.error, notes: [...(prev?.notes ?? []), ...notes],
      });
      record({ type: "report", ...report });
      return report;
    } catch (e) {
      await live.saved;
      const outcome = {
        status: live.abort.signal.aborted ? ("cancelled" as const) : ("error" as const), summary: "", verification: null, usage: state.usage, cost_usd: state.cost_usd, model_calls: state.model_calls,
        turns: state.turn, fix_rounds: 0, duration_ms: Date.now() - started, error: live.abort.signal.aborted ? undefined : (e as Error).message, notes: [],
      };
      // If even the report cannot be computed (git failing, run folder deleted), report without the file list.
      const report = await this.finish(root, state, outcome).catch((failure: Error) => this.finish(root, { ...state, checkpoint: undefined }, { ...outcome, notes: [`Could not list the changes: ${failure.message}`] }));
      record({ type: "report", ...report });
      return report;
    } finally {
      await written;
      for (const release of live.releases.splice(0)) release();
    }
  }

  /** Writes the final report: files changed since the checkpoint, and how to revert (or merge, for a worktree). */
  private async finish(root: string, state: RunState, r: Omit<TaskReport, "run_id" | "description" | "agent" | "model" | "files_changed" | "transcript" | "checkpoint" | "revert_command" | "isolation" | "merge_command">): Promise<TaskReport> {
    let filesChanged: FileChange[] = [];
    let revert = "(no checkpoint was taken: nothing changed)";
    let merge: string | undefined;
    if (state.checkpoint) {
      const after = await snapshot(state.workdir, `backend-agent result of ${state.run_id}`);
      filesChanged = await changes(state.workdir, state.checkpoint, after);
      if (state.isolation === "worktree") {
        const result = `refs/backend-agent-results/${state.run_id}`;
        await setRef(root, result, after);
        merge = mergeCommand(root, state.checkpoint, result);
        revert = `git -C ${shellQuote(root)} worktree remove --force ${shellQuote(state.workdir)}`;
      } else revert = revertCommand(root, state.checkpoint, filesChanged);
    }
    const report: TaskReport = {
      run_id: state.run_id, description: state.description, agent: state.agent, model: state.model, files_changed: filesChanged,
      transcript: path.relative(root, path.join(runDir(root, state.run_id), "transcript.jsonl")), checkpoint: state.checkpoint ?? "", revert_command: revert,
      isolation: state.isolation, ...(merge && { merge_command: merge }), ...r,
    };
    if (!report.question) delete report.question;
    if (!report.error) delete report.error;
    Object.assign(state, { status: report.status, usage: report.usage, cost_usd: report.cost_usd, model_calls: report.model_calls, activity: report.status });
    await writeJson(path.join(runDir(root, state.run_id), "report.json"), report);
    await writeJson(path.join(runDir(root, state.run_id), "state.json"), { ...state, updated_at: new Date().toISOString() });
    return report;
  }

  private async ask(ctx: ToolContext, question: string, options?: string[]): Promise<string | undefined> {
    if (!ctx.server?.getClientCapabilities()?.elicitation) return undefined;
    const answer = options ? { type: "string" as const, title: "Answer", enum: options } : { type: "string" as const, title: "Answer" };
    const res = await ctx.server.elicitInput({ message: question, requestedSchema: { type: "object", properties: { answer }, required: ["answer"] } });
    if (res.action === "accept" && typeof res.content?.answer === "string") return `The user answered: ${res.content.answer}`;
    return `The user chose not to answer (${res.action}). Proceed with your best judgement and say what you assumed.`;
  }

  /** Waits up to ms for a live run to end, forwarding its progress; true when it ended. */
  async wait(live: LiveRun, ms: number, progress: (m: string) => void, signal?: AbortSignal): Promise<boolean> {
    live.listeners.add(progress);
    let timer: NodeJS.Timeout | undefined;
    // A heartbeat in every phase (queued, model call, long command) so clients that reset their timeout on progress keep waiting.
    const started = Date.now();
    const heartbeat = setInterval(() => progress(`${live.state.activity} · ${Math.round((Date.now() - started) / 1000)}s`), HEARTBEAT_MS);
    try {
      const ended = await Promise.race([
        live.done.then(() => true),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(false), ms);
          signal?.addEventListener("abort", () => r(false));
        }),
      ]);
      return ended;
    } finally {
      clearTimeout(timer);
      clearInterval(heartbeat);
      live.listeners.delete(progress);
    }
  }

  getLive(id: string): LiveRun | undefined {
    return this.live.get(id);
  }

  /** The report of an ended run, or the state of one in progress; an orphaned run is finalised as interrupted. */
  async view(root: string, id: string): Promise<TaskReport | RunState> {
    if (!/^[\w-]+$/.test(id)) throw new ToolError(`"${id}" is not a run id. Call TaskOutput without run_id to list the runs.`);
    const live = this.live.get(id);
    if (live) return ENDED.includes(live.state.status) ? live.done : live.state;
    const report = await readJson<TaskReport>(path.join(runDir(root, id), "report.json"));
    const state = await readJson<RunState>(path.join(runDir(root, id), "state.json"));
    if (report && (!state || ENDED.includes(state.status) || state.server_pid === process.pid)) return report;
    if (!state) throw new ToolError(`No run ${id} in this workspace. Call TaskOutput without run_id to list the runs.`);
    if (state.server_pid !== process.pid && alive(state.server_pid)) return state;
    return this.finish(root, state, {
      status: "interrupted", summary: "", verification: null, usage: state.usage, cost_usd: state.cost_usd, model_calls: state.model_calls, turns: state.turn,
      fix_rounds: 0, duration_ms: Date.parse(state.updated_at) - Date.parse(state.created_at), notes: ["The server stopped while this run was in progress; what it changed is still in the workspace."],
    });
  }

  /** The newest runs of the workspace (at most LIST_LIMIT), with totals over all of them. */
  async list(root: string): Promise<{ runs: RunSummary[]; totals: { runs: number; usage: Usage; cost_usd: number; model_calls: number } }> {
    const ids = (await fs.readdir(runsDir(root)).catch(() => [] as string[])).filter((d) => existsSync(path.join(runsDir(root), d, "state.json"))).sort().reverse();
    const runs: RunSummary[] = [];
    const totals = { runs: 0, usage: emptyUsage(), cost_usd: 0, model_calls: 0 };
    for (const id of ids) {
      const v = await this.view(root, id).catch(() => undefined);
      if (!v) continue;
      if (runs.length < LIST_LIMIT) runs.push({ run_id: v.run_id, status: v.status, description: v.description, agent: v.agent, model: v.model, cost_usd: v.cost_usd, model_calls: v.model_calls, turns: "turns" in v ? v.turns : v.turn });
      totals.runs++;
      totals.cost_usd += v.cost_usd;
      totals.model_calls += v.model_calls;
      for (const k of Object.keys(totals.usage) as (keyof Usage)[]) totals.usage[k] += v.usage[k];
    }
    return { runs, totals };
  }

  /** Stops a live run (as a client cancel would) and returns its report. */
  async stop(root: string, id: string): Promise<TaskReport | RunState> {
    const live = this.live.get(id);
    if (!live) return this.view(root, id);
    live.abort.abort();
    return live.done;
  }
}

interface Prepared {
  backend: Awaited<ReturnType<typeof chooseBackend>>;
  system: string;
  tools: Tool[];
  messages: Message[];
  budgetUsd?: number;
  previous?: TaskReport;
}

export interface RunSummary {
  run_id: string;
  status: RunStatus;
  description: string;
  agent: string;
  model: string;
  cost_usd: number;
  model_calls: number;
  turns: number;
}

