import fs from "node:fs/promises";
import { loadAgents, type Agent } from "../prompts.js";
import { ToolError } from "../server/errors.js";
import type { Tool, ToolContext } from "../server/tool.js";
import { continueConversation } from "./agent.js";
import ask from "./ask.js";
import { mayDelegate } from "./delegation.js";
import { execute, type Prepared } from "./execute.js";
import { type LiveRun, waitFor } from "./live.js";
import { chooseBackend, DEFAULT_MODEL, resolveModel, type Message } from "./model.js";
import { emptyUsage } from "./pricing.js";
import { isEnded, type RunState, type RunSummary, type TaskReport, type UnreadableRun, type Usage } from "./records.js";
import { outcomeWithoutAgent, withCommands, writeReportAnyway } from "./report.js";
import { Scheduler } from "./scheduler.js";
import {
  checkRunId,
  newRunId,
  openStore,
  readMessages,
  readRun,
  runDir,
  runFolders,
  type Store,
  UnreadableRunError,
  writeRecord,
} from "./store.js";
import { checksBrief } from "./verify/index.js";

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

const LIST_LIMIT = 50;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class RunManager {
  private readonly live = new Map<string, LiveRun>();
  private readonly scheduler: Scheduler;
  private readonly stores = new Map<string, Promise<Store>>();

  constructor(private readonly config: RunConfig) {
    this.scheduler = new Scheduler(config.maxRuns);
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
    const messages: Message[] = [{ role: "user", content: req.prompt }];
    return this.launch(store, state, ctx, await this.prepare(agent, backend, store, messages, req.max_budget_usd));
  }

  /** What a run starts from: the agent's prompt and tools, its web and delegation rights, the conversation. */
  private async prepare(
    agent: Agent,
    backend: Prepared["backend"],
    store: Store,
    messages: Message[],
    budgetUsd: number | undefined,
  ): Promise<Prepared> {
    return {
      backend,
      system: await this.systemPrompt(agent, store.workspace),
      tools: toolsFor(agent, this.config.tools),
      web: webFor(agent),
      delegate: mayDelegate(agent),
      messages,
      budgetUsd,
    };
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
    const messages = continueConversation(saved as Message[], req.prompt);
    return this.launch(store, state, ctx, {
      ...(await this.prepare(agent, backend, store, messages, req.max_budget_usd)),
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
    live.done = execute(live, ctx, prepared, { config: this.config, scheduler: this.scheduler }).finally(() =>
      this.live.delete(state.run_id),
    );
    // A run in the background has no caller to see a failure: never let it become an unhandled rejection.
    live.done.catch((e: Error) => process.stderr.write(`run ${state.run_id} failed: ${e.stack ?? e}\n`));
    return live;
  }

  /** Waits up to ms for a live run to end, forwarding its progress; true when it ended. */
  wait(live: LiveRun, ms: number, progress: (m: string) => void, signal?: AbortSignal): Promise<boolean> {
    return waitFor(live, ms, progress, signal);
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
    const duration = Math.max(0, Date.parse(state.updated_at) - Date.parse(state.created_at));
    const notes = ["The server stopped while this run was in progress; what it changed is still in the workspace."];
    // A worktree that was removed meanwhile: report without the file list.
    return writeReportAnyway(store, state, outcomeWithoutAgent(state, "interrupted", duration, { notes }));
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
      // A partner's run is counted in its parent's totals already.
      if (v.kind === "report" && v.parent_run_id) continue;
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
