import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import { continueConversation, runAgent, type Budget } from "./agent.js";
import { createDelegateTool, mayDelegate } from "./delegation.js";
import {
  changes,
  discardWorktreeCommand,
  keepCommit,
  materialise,
  mergeCommand,
  revertCommand,
  snapshot,
} from "./git.js";
import { chooseBackend, DEFAULT_MODEL, emptyUsage, resolveModel, type Message } from "./model.js";
import { loadAgents, type Agent } from "../prompts.js";
import type { Tool, ToolContext } from "../server/tool.js";
import ask from "./ask.js";
import {
  isEnded,
  type FileChange,
  type RunState,
  type RunSummary,
  type TaskReport,
  type UnreadableRun,
  type Usage,
} from "./records.js";
import { checksBrief, verify } from "./verify/index.js";
import { Semaphore } from "../util/semaphore.js";
import {
  checkRunId,
  openStore,
  readMessages,
  readRun,
  recordFile,
  runDir,
  runFolders,
  worktreeDir,
  writeRecord,
  type Store,
} from "./store.js";
import { Workspace } from "../files/workspace.js";
import { ToolError } from "../server/errors.js";

/** Durable Task runs: each lives in the server's state folder, runs/<id>/ (state, conversation, transcript, report), so nothing is only in memory. */

export type { RunState, RunSummary, TaskReport } from "./records.js";

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

/** The tools an agent may call: all (and AskUserQuestion) unless its definition lists them. */
const toolsFor = (agent: Agent, all: Tool[]) =>
  [...all, ask].filter((t) => !agent.tools || agent.tools.includes(t.name));

/** Whether the agent may use the API's web tools: its definition lists WebSearch or WebFetch, or lists no tools. */
const webFor = (agent: Agent) => !agent.tools || agent.tools.some((t) => t === "WebSearch" || t === "WebFetch");

const FIX_ROUNDS = 2;
const LIST_LIMIT = 50;
const HEARTBEAT_MS = 5_000;

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

/** A run whose records failed validation: named with the reason, never followed. */
export class UnreadableRunError extends ToolError {
  constructor(
    readonly id: string,
    readonly reason: string,
  ) {
    super(`Run ${id} is unreadable and is not used: ${reason}.`);
  }
}

interface LiveRun {
  store: Store;
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
  private readonly stores = new Map<string, Promise<Store>>();

  constructor(private readonly config: RunConfig) {
    this.slots = new Semaphore(config.maxRuns);
  }

  /** The workspace's state folder, opened once per server. */
  private store(root: string): Promise<Store> {
    let store = this.stores.get(root);
    if (!store) {
      store = openStore(root);
      this.stores.set(root, store);
      store.catch(() => this.stores.delete(root));
    }
    return store;
  }

  /** Starts a run (or resumes an ended one) detached from any request; returns at once. */
  async start(req: TaskRequest, ctx: ToolContext): Promise<LiveRun> {
    const root = ctx.ws.root;
    if (req.resume) return this.resume(req, ctx);
    const store = await this.store(root);
    if (!req.description) throw new ToolError("description is required (a 3-5 word label for the task).");
    const agents = await loadAgents(root);
    const agent = agents.get(req.subagent_type);
    if (!agent)
      throw new ToolError(
        `Unknown subagent_type "${req.subagent_type}". Known agents: ${[...agents.keys()].join(", ")}. Define more in .claude/agents/<name>.md.`,
      );
    const requested = req.model ?? agent.model ?? (process.env.BACKEND_AGENT_MODEL || DEFAULT_MODEL);
    const backend = await chooseBackend(resolveModel(requested), ctx.server);
    const id = newRunId();
    await fs.mkdir(runDir(store, id));
    const now = new Date().toISOString();
    const state: RunState = {
      kind: "state",
      run_id: id,
      status: "queued",
      description: req.description,
      agent: agent.name,
      model: backend.model,
      isolation: req.isolation === "worktree" ? "worktree" : "none",
      workdir: root,
      server_pid: process.pid,
      created_at: now,
      updated_at: now,
      turn: 0,
      max_turns: req.max_turns,
      activity: "queued",
      usage: emptyUsage(),
      cost_usd: 0,
      model_calls: 0,
    };
    await writeRecord(store, id, "state.json", state);
    const tools = toolsFor(agent, this.config.tools);
    return this.launch(store, state, ctx, {
      backend,
      system: await this.systemPrompt(agent, store.workspace),
      tools,
      web: webFor(agent),
      delegate: mayDelegate(agent),
      messages: [{ role: "user", content: req.prompt }],
      budgetUsd: req.max_budget_usd,
    });
  }

  /** The agent's definition, plus (for an agent that can Run) which checks the server will run here, so it runs them first. */
  private async systemPrompt(agent: Agent, root: string): Promise<string> {
    if (agent.tools && !agent.tools.includes("Run")) return agent.systemPrompt;
    return `${agent.systemPrompt}\n\n${await checksBrief(root, this.config.testCommand)}`;
  }

  private async resume(req: TaskRequest, ctx: ToolContext): Promise<LiveRun> {
    const store = await this.store(ctx.ws.root);
    const id = checkRunId(req.resume!);
    if (this.live.has(id) || this.resuming.has(id))
      throw new ToolError(
        `Run ${id} is still running: wait for it with TaskOutput, or stop it with TaskStop, before resuming.`,
      );
    this.resuming.add(id);
    try {
      return await this.prepareResume(req, ctx, store, id);
    } finally {
      this.resuming.delete(id);
    }
  }

  private readonly resuming = new Set<string>();

  private async prepareResume(req: TaskRequest, ctx: ToolContext, store: Store, id: string): Promise<LiveRun> {
    const prev = await this.view(store.workspace, id);
    if (prev.kind !== "report")
      throw new ToolError(`Run ${id} is ${prev.status} in another server process; it cannot be resumed here.`);
    const saved = await readMessages(store, id).catch((e: Error) => {
      throw new ToolError(`Run ${id} cannot be resumed: ${e.message}.`);
    });
    if (!saved) throw new ToolError(`Run ${id} has no saved conversation to resume.`);
    const { state } = await readRun(store, id);
    if (!state) throw new ToolError(`Run ${id} has no state record to resume.`);
    const agents = await loadAgents(store.workspace);
    const agent = agents.get(prev.agent);
    if (!agent) throw new ToolError(`Run ${id} used agent "${prev.agent}", which no longer exists.`);
    const backend = await chooseBackend(prev.model, ctx.server, true);
    Object.assign(state, {
      status: "queued",
      server_pid: process.pid,
      max_turns: prev.turns + req.max_turns,
      activity: "queued (resume)",
      updated_at: new Date().toISOString(),
    });
    const tools = toolsFor(agent, this.config.tools);
    return this.launch(store, state, ctx, {
      backend,
      system: await this.systemPrompt(agent, store.workspace),
      tools,
      web: webFor(agent),
      delegate: mayDelegate(agent),
      messages: continueConversation(saved as Message[], req.prompt),
      budgetUsd: req.max_budget_usd,
      previous: prev,
    });
  }

  private launch(store: Store, state: RunState, ctx: ToolContext, prepared: Prepared): LiveRun {
    const live: LiveRun = {
      store,
      state,
      releases: [],
      saved: Promise.resolve(),
      abort: new AbortController(),
      listeners: new Set(),
      done: undefined as unknown as Promise<TaskReport>,
    };
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
      const turn = this.workspaces.get(live.store.workspace) ?? new Semaphore(1);
      this.workspaces.set(live.store.workspace, turn);
      if (turn.busy) this.note(live, "queued: another run is changing this workspace");
      live.releases.push(await turn.acquire(signal));
    }
    if (this.slots.busy)
      this.note(live, `queued: ${this.config.maxRuns} runs in progress (at most ${this.config.maxRuns} at once)`);
    live.releases.push(await this.slots.acquire(signal));
  }

  private note(live: LiveRun, activity: string): void {
    live.state.activity = activity;
    for (const l of live.listeners) l(activity);
  }

  private persist(live: LiveRun): Promise<void> {
    live.saved = live.saved
      .then(() =>
        writeRecord(live.store, live.state.run_id, "state.json", {
          ...live.state,
          updated_at: new Date().toISOString(),
        }),
      )
      .catch(() => undefined);
    return live.saved;
  }

  /** Takes the checkpoint (and the worktree) once the run may start. */
  private async setup(live: LiveRun): Promise<string[]> {
    const { store, state } = live;
    const notes: string[] = [];
    if (!state.checkpoint) {
      const checkpoint = await snapshot(
        store,
        store.workspace,
        `backend-agent checkpoint before ${state.run_id}: ${state.description}`,
      );
      await keepCommit(store, state.run_id, checkpoint);
      state.checkpoint = checkpoint;
      if (state.isolation === "worktree") {
        state.workdir = await materialise(store, checkpoint, worktreeDir(store, state.run_id), store.workspace);
        notes.push(`Worked in the worktree ${state.workdir}; the workspace itself was not changed.`);
      }
    }
    return notes;
  }

  private async execute(live: LiveRun, ctx: ToolContext, prepared: Prepared): Promise<TaskReport> {
    const { store, state } = live;
    const root = store.workspace;
    let started = Date.now();
    let written = Promise.resolve();
    const record = (event: Record<string, unknown>) => {
      const line = `${JSON.stringify({ t: new Date().toISOString(), run_id: state.run_id, ...event })}\n`;
      written = written
        .then(() => fs.appendFile(recordFile(store, state.run_id, "transcript.jsonl"), line))
        .catch(() => undefined);
    };
    try {
      await this.acquire(live);
      const notes = await this.setup(live);
      if (prepared.backend.kind === "sampling")
        notes.push("Token and cost budgets are not enforced: MCP sampling reports no token usage.");
      started = Date.now();
      state.status = "running";
      await this.persist(live);
      record({
        type: "start",
        agent: state.agent,
        model: state.model,
        backend: prepared.backend.kind,
        resumed: Boolean(prepared.previous),
        last_message: prepared.messages.at(-1),
      });

      // One Workspace per folder: the client's and the agent's edits of a file share its lock and read stamps.
      const ws = state.workdir === root ? ctx.ws : await Workspace.open(state.workdir);
      const runCtx: ToolContext = {
        ws,
        signal: live.abort.signal,
        server: ctx.server,
        progress: (m) => this.note(live, m),
        ask: ctx.ask,
      };
      const run = this.config.tools.find((t) => t.name === "Run");
      const changedNow = async () =>
        changes(
          store,
          state.checkpoint!,
          await snapshot(store, state.workdir, `backend-agent state of ${state.run_id}`),
        );
      const prev = prepared.previous;
      const budget: Budget = {
        maxTurns: state.max_turns,
        maxTokens: this.config.maxTokens,
        maxCostUsd: prepared.budgetUsd ?? this.config.maxBudgetUsd,
        deadline: started + this.config.timeoutMs,
      };
      const partner = prepared.delegate
        ? createDelegateTool({
            agents: await loadAgents(root),
            parent: state.agent,
            tools: [...this.config.tools, ask],
            backend: prepared.backend,
            record,
            budget: () => ({
              total: budget,
              spent: { usage: state.usage, costUsd: state.cost_usd, turns: state.turn },
            }),
          })
        : undefined;
      const outcome = await runAgent({
        backend: prepared.backend,
        system: prepared.system,
        tools: partner ? [...prepared.tools, partner] : prepared.tools,
        web: prepared.web,
        ctx: runCtx,
        messages: prepared.messages,
        spent: { usage: prev?.usage ?? emptyUsage(), modelCalls: prev?.model_calls ?? 0, turns: prev?.turns ?? 0 },
        budget,
        fixRounds: FIX_ROUNDS,
        record,
        saveMessages: (messages) => writeRecord(store, state.run_id, "messages.json", messages),
        onTurn: (t) => {
          Object.assign(state, {
            turn: t.turn,
            activity: t.activity,
            usage: t.usage,
            cost_usd: t.costUsd,
            model_calls: t.modelCalls,
          });
          void this.persist(live);
        },
        verify: async () => {
          if (!run)
            return {
              outcome: "unverified",
              passed: true,
              checks: [],
              note: "Run is not available, so no checks could be run.",
              duration_ms: 0,
            };
          const changed = (await changedNow()).map((c) => c.path);
          const checkpoint = state.checkpoint ? { repo: store, commit: state.checkpoint } : undefined;
          return verify({
            ctx: runCtx,
            run,
            changed,
            checkpoint,
            testCommand: this.config.testCommand,
            tmpdir: this.config.checksTmpdir,
          });
        },
      });
      await live.saved;
      const report = await this.finish(store, state, {
        status: outcome.status,
        summary: outcome.summary,
        verification: outcome.verification ?? null,
        usage: outcome.usage,
        cost_usd: outcome.costUsd,
        model_calls: outcome.modelCalls,
        turns: outcome.turns,
        fix_rounds: (prev?.fix_rounds ?? 0) + outcome.fixRounds,
        duration_ms: (prev?.duration_ms ?? 0) + Date.now() - started,
        question: outcome.question,
        error: outcome.error,
        notes: [...(prev?.notes ?? []), ...notes, ...outcome.notes],
        ...(outcome.children.length && { children: [...(prev?.children ?? []), ...outcome.children] }),
      });
      record({ type: "report", ...report });
      return report;
    } catch (e) {
      await live.saved;
      const outcome = {
        status: live.abort.signal.aborted ? ("cancelled" as const) : ("error" as const),
        summary: "",
        verification: null,
        usage: state.usage,
        cost_usd: state.cost_usd,
        model_calls: state.model_calls,
        turns: state.turn,
        fix_rounds: 0,
        duration_ms: Date.now() - started,
        error: live.abort.signal.aborted ? undefined : (e as Error).message,
        notes: [],
      };
      // If even the report cannot be computed (git failing, run folder deleted), report without the file list.
      const report = await this.finish(store, state, outcome).catch((failure: Error) =>
        this.finish(
          store,
          { ...state, checkpoint: undefined },
          { ...outcome, notes: [`Could not list the changes: ${failure.message}`] },
        ),
      );
      record({ type: "report", ...report });
      return report;
    } finally {
      await written;
      for (const release of live.releases.splice(0)) release();
    }
  }

  /** Writes the final report: files changed since the checkpoint, and how to revert (or merge, for a worktree). */
  private async finish(store: Store, state: RunState, r: Outcome): Promise<TaskReport> {
    let filesChanged: FileChange[] = [];
    let result: string | undefined;
    if (state.checkpoint) {
      const after = await snapshot(store, state.workdir, `backend-agent result of ${state.run_id}`);
      filesChanged = await changes(store, state.checkpoint, after);
      if (state.isolation === "worktree") {
        await keepCommit(store, `${state.run_id}-result`, after);
        result = after;
      }
    }
    const report = withCommands(store, {
      kind: "report",
      run_id: state.run_id,
      description: state.description,
      agent: state.agent,
      model: state.model,
      files_changed: filesChanged,
      transcript: "",
      ...(state.checkpoint && { checkpoint: state.checkpoint }),
      ...(result && { result }),
      revert_command: "",
      isolation: state.isolation,
      ...r,
    });
    if (!report.question) delete report.question;
    if (!report.error) delete report.error;
    Object.assign(state, {
      status: report.status,
      usage: report.usage,
      cost_usd: report.cost_usd,
      model_calls: report.model_calls,
      activity: report.status,
    });
    await writeRecord(store, state.run_id, "report.json", report);
    await writeRecord(store, state.run_id, "state.json", { ...state, updated_at: new Date().toISOString() });
    return report;
  }

  /** Waits up to ms for a live run to end, forwarding its progress; true when it ended. */
  async wait(live: LiveRun, ms: number, progress: (m: string) => void, signal?: AbortSignal): Promise<boolean> {
    live.listeners.add(progress);
    let timer: NodeJS.Timeout | undefined;
    // A heartbeat in every phase (queued, model call, long command) so clients that reset their timeout on progress keep waiting.
    const started = Date.now();
    const heartbeat = setInterval(
      () => progress(`${live.state.activity} · ${Math.round((Date.now() - started) / 1000)}s`),
      HEARTBEAT_MS,
    );
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
    const store = await this.store(root);
    const live = this.live.get(checkRunId(id));
    if (live) return isEnded(live.state.status) ? live.done : live.state;
    const { state, report } = await readRun(store, id).catch((e: Error) => {
      throw new UnreadableRunError(id, e.message);
    });
    if (report && (!state || isEnded(state.status) || state.server_pid === process.pid))
      return withCommands(store, report);
    if (!state) throw new ToolError(`No run ${id} in this workspace. Call TaskOutput without run_id to list the runs.`);
    if (state.server_pid !== process.pid && alive(state.server_pid)) return state;
    const outcome: Outcome = {
      status: "interrupted",
      summary: "",
      verification: null,
      usage: state.usage,
      cost_usd: state.cost_usd,
      model_calls: state.model_calls,
      turns: state.turn,
      fix_rounds: 0,
      duration_ms: Math.max(0, Date.parse(state.updated_at) - Date.parse(state.created_at)),
      notes: ["The server stopped while this run was in progress; what it changed is still in the workspace."],
    };
    // A worktree that was removed meanwhile: report without the file list.
    return this.finish(store, state, outcome).catch((failure: Error) =>
      this.finish(
        store,
        { ...state, checkpoint: undefined },
        { ...outcome, notes: [...outcome.notes, `Could not list the changes: ${failure.message}`] },
      ),
    );
  }

  /** The newest runs of the workspace (at most LIST_LIMIT), with totals over all of them; unreadable runs are named with the reason. */
  async list(root: string): Promise<{
    runs: RunSummary[];
    unreadable: UnreadableRun[];
    totals: { runs: number; usage: Usage; cost_usd: number; model_calls: number };
  }> {
    const store = await this.store(root);
    const { ids, strays } = await runFolders(store);
    const runs: RunSummary[] = [];
    const unreadable: UnreadableRun[] = [...strays];
    const totals = { runs: 0, usage: emptyUsage(), cost_usd: 0, model_calls: 0 };
    for (const id of ids) {
      let v: TaskReport | RunState;
      try {
        v = await this.view(root, id);
      } catch (e) {
        if (e instanceof UnreadableRunError) unreadable.push({ name: id, reason: e.reason });
        // Otherwise a folder whose state.json is not written yet: a run being created, listed once it is.
        continue;
      }
      if (runs.length < LIST_LIMIT)
        runs.push({
          run_id: v.run_id,
          status: v.status,
          description: v.description,
          agent: v.agent,
          model: v.model,
          cost_usd: v.cost_usd,
          model_calls: v.model_calls,
          turns: v.kind === "report" ? v.turns : v.turn,
        });
      totals.runs++;
      totals.cost_usd += v.cost_usd;
      totals.model_calls += v.model_calls;
      for (const k of Object.keys(totals.usage) as (keyof Usage)[]) totals.usage[k] += v.usage[k];
    }
    return { runs, unreadable, totals };
  }

  /** Stops a live run (as a client cancel would) and returns its report. */
  async stop(root: string, id: string): Promise<TaskReport | RunState> {
    const live = this.live.get(checkRunId(id));
    if (!live) return this.view(root, id);
    live.abort.abort();
    return live.done;
  }
}

interface Prepared {
  backend: Awaited<ReturnType<typeof chooseBackend>>;
  system: string;
  tools: Tool[];
  web: boolean;
  delegate: boolean;
  messages: Message[];
  budgetUsd?: number;
  previous?: TaskReport;
}

/** What the agent loop and the server decide about a run; finish() adds what it computes. */
type Outcome = Omit<
  TaskReport,
  | "kind"
  | "run_id"
  | "description"
  | "agent"
  | "model"
  | "files_changed"
  | "transcript"
  | "checkpoint"
  | "result"
  | "revert_command"
  | "isolation"
  | "merge_command"
>;

/** The report with its transcript path and commands rebuilt from its validated fields (never taken from the record). */
export function withCommands(store: Store, report: TaskReport): TaskReport {
  const out: TaskReport = { ...report, transcript: recordFile(store, report.run_id, "transcript.jsonl") };
  delete out.merge_command;
  if (!report.checkpoint) return { ...out, revert_command: "(no checkpoint was taken: nothing changed)" };
  if (report.isolation === "none")
    return { ...out, revert_command: revertCommand(store, store.workspace, report.checkpoint, report.files_changed) };
  const merge = report.result && mergeCommand(store, store.workspace, report.checkpoint, report.result);
  return {
    ...out,
    revert_command: discardWorktreeCommand(worktreeDir(store, report.run_id)),
    ...(merge && { merge_command: merge }),
  };
}
