import fs from "node:fs/promises";
import { Workspace } from "../files/workspace.js";
import { loadAgents } from "../prompts.js";
import type { Tool, ToolContext } from "../server/tool.js";
import { type AgentOptions, type AgentOutcome, runAgent, type Budget } from "./agent.js";
import ask from "./ask.js";
import { createDelegateTool } from "./delegation.js";
import { changes, keepCommit, materialise, snapshot } from "./git.js";
import { type LiveRun, note, persist } from "./live.js";
import type { chooseBackend, Message } from "./model.js";
import { emptyUsage } from "./pricing.js";
import type { RunState, TaskReport } from "./records.js";
import { outcomeWithoutAgent, writeChildRecord, writeReport, writeReportAnyway } from "./report.js";
import type { RunConfig } from "./runs.js";
import type { Scheduler } from "./scheduler.js";
import { recordFile, type Store, worktreeDir, writeRecord } from "./store.js";
import { type Verification, verify } from "./verify/index.js";
import { WriteBehind } from "../util/write-behind.js";

/** One run from its turn to its report: checkpoint, the agent loop with its tools and budgets, verification. */

const FIX_ROUNDS = 2;

export interface Prepared {
  backend: Awaited<ReturnType<typeof chooseBackend>>;
  system: string;
  tools: Tool[];
  web: boolean;
  delegate: boolean;
  messages: Message[];
  budgetUsd?: number;
  previous?: TaskReport;
}

export interface RunDeps {
  config: RunConfig;
  scheduler: Scheduler;
}

/** Takes the checkpoint (and the worktree) once the run may start. */
async function setup(live: LiveRun): Promise<string[]> {
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

/** Runs one run to its report; whatever happens, the report is written and the run's slots are released. */
export function execute(live: LiveRun, ctx: ToolContext, prepared: Prepared, deps: RunDeps): Promise<TaskReport> {
  return new Execution(live, ctx, prepared, deps).run();
}

class Execution {
  private started = Date.now();
  private written = Promise.resolve();
  private readonly state: RunState;
  private readonly store: Store;

  constructor(
    private readonly live: LiveRun,
    private readonly ctx: ToolContext,
    private readonly prepared: Prepared,
    private readonly deps: RunDeps,
  ) {
    this.state = live.state;
    this.store = live.store;
  }

  /** Transcript lines not yet handed to a write. */
  private unwritten = "";
  /** The conversation, saved for resume after every change: written in the background, in order, flushed before the report. */
  private readonly conversation = new WriteBehind<Message[]>((messages) =>
    writeRecord(this.store, this.state.run_id, "messages.json", messages),
  );

  /** Appends an event to the run's transcript (writes chained, lines recorded meanwhile appended together, never failing the run). */
  private readonly record = (event: Record<string, unknown>) => {
    const queued = this.unwritten !== "";
    this.unwritten += `${JSON.stringify({ t: new Date().toISOString(), run_id: this.state.run_id, ...event })}\n`;
    if (queued) return;
    const file = recordFile(this.store, this.state.run_id, "transcript.jsonl");
    this.written = this.written
      .then(() => {
        const lines = this.unwritten;
        this.unwritten = "";
        return fs.appendFile(file, lines);
      })
      .catch(() => undefined);
  };

  async run(): Promise<TaskReport> {
    try {
      await this.deps.scheduler.acquire(this.live);
      const notes = await this.begin();
      const outcome = await runAgent(await this.agentOptions());
      await this.conversation.flush();
      await this.live.saved;
      return await this.report(outcome, notes);
    } catch (e) {
      return await this.fail(e);
    } finally {
      await this.written;
      for (const release of this.live.releases.splice(0)) release();
    }
  }

  /** Checkpoint taken, state running: what the report should note about how the run was set up. */
  private async begin(): Promise<string[]> {
    const { state, prepared } = this;
    const notes = await setup(this.live);
    if (prepared.backend.kind === "sampling")
      notes.push("Token and cost budgets are not enforced: MCP sampling reports no token usage.");
    this.started = Date.now();
    state.status = "running";
    await persist(this.live);
    this.record({
      type: "start",
      agent: state.agent,
      model: state.model,
      backend: prepared.backend.kind,
      resumed: Boolean(prepared.previous),
      last_message: prepared.messages.at(-1),
    });
    return notes;
  }

  private async agentOptions(): Promise<AgentOptions> {
    const { state, store, prepared, live } = this;
    // One Workspace per folder: the client's and the agent's edits of a file share its lock and read stamps.
    const ws = state.workdir === store.workspace ? this.ctx.ws : await Workspace.open(state.workdir);
    const runCtx: ToolContext = { ...this.ctx, ws, signal: live.abort.signal, progress: (m) => note(live, m) };
    const prev = prepared.previous;
    const budget = this.budget();
    const partner = prepared.delegate ? await this.partnerTool(budget) : undefined;
    return {
      backend: prepared.backend,
      system: prepared.system,
      tools: partner ? [...prepared.tools, partner] : prepared.tools,
      web: prepared.web,
      ctx: runCtx,
      messages: prepared.messages,
      spent: { usage: prev?.usage ?? emptyUsage(), modelCalls: prev?.model_calls ?? 0, turns: prev?.turns ?? 0 },
      budget,
      fixRounds: FIX_ROUNDS,
      record: this.record,
      saveMessages: async (messages) => this.conversation.save([...messages]),
      onTurn: (t) => {
        Object.assign(state, {
          turn: t.turn,
          activity: t.activity,
          usage: t.usage,
          cost_usd: t.costUsd,
          model_calls: t.modelCalls,
        });
        void persist(live);
      },
      verify: () => this.verify(runCtx),
    };
  }

  private budget(): Budget {
    const { config } = this.deps;
    return {
      maxTurns: this.state.max_turns,
      maxTokens: config.maxTokens,
      maxCostUsd: this.prepared.budgetUsd ?? config.maxBudgetUsd,
      deadline: this.started + config.timeoutMs,
    };
  }

  /** The agent's own Task tool, to hand work to a partner agent within what is left of this run's budgets. */
  private async partnerTool(budget: Budget): Promise<Tool | undefined> {
    const { state } = this;
    return createDelegateTool({
      agents: await loadAgents(this.store.workspace),
      parent: state.agent,
      tools: [...this.deps.config.tools, ask],
      backend: this.prepared.backend,
      record: this.record,
      budget: () => ({ total: budget, spent: { usage: state.usage, costUsd: state.cost_usd, turns: state.turn } }),
      onChild: (child) => writeChildRecord(this.store, state, child),
    });
  }

  /** The server's checks of the files changed since the checkpoint. */
  private async verify(runCtx: ToolContext): Promise<Verification> {
    const { state, store, deps } = this;
    const run = deps.config.tools.find((t) => t.name === "Run");
    if (!run) {
      const note = "Run is not available, so no checks could be run.";
      return { outcome: "unverified", passed: true, checks: [], note, duration_ms: 0 };
    }
    const now = await snapshot(store, state.workdir, `backend-agent state of ${state.run_id}`);
    const changed = (await changes(store, state.checkpoint!, now)).map((c) => c.path);
    const checkpoint = state.checkpoint ? { repo: store, commit: state.checkpoint } : undefined;
    const { testCommand, checksTmpdir: tmpdir } = deps.config;
    return verify({ ctx: runCtx, run, changed, checkpoint, testCommand, tmpdir });
  }

  private async report(outcome: AgentOutcome, notes: string[]): Promise<TaskReport> {
    const prev = this.prepared.previous;
    const report = await writeReport(this.store, this.state, {
      status: outcome.status,
      summary: outcome.summary,
      verification: outcome.verification ?? null,
      usage: outcome.usage,
      cost_usd: outcome.costUsd,
      model_calls: outcome.modelCalls,
      turns: outcome.turns,
      fix_rounds: (prev?.fix_rounds ?? 0) + outcome.fixRounds,
      duration_ms: (prev?.duration_ms ?? 0) + Date.now() - this.started,
      question: outcome.question,
      error: outcome.error,
      notes: [...(prev?.notes ?? []), ...notes, ...outcome.notes],
      ...(outcome.children.length && { children: [...(prev?.children ?? []), ...outcome.children] }),
    });
    this.record({ type: "report", ...report });
    return report;
  }

  /** The run stopped by a cancel or an error: reported all the same, with what it changed. */
  private async fail(e: unknown): Promise<TaskReport> {
    await this.conversation.flush().catch(() => undefined);
    await this.live.saved;
    const aborted = this.live.abort.signal.aborted;
    const outcome = outcomeWithoutAgent(this.state, aborted ? "cancelled" : "error", Date.now() - this.started, {
      error: aborted ? undefined : (e as Error).message,
    });
    const report = await writeReportAnyway(this.store, this.state, outcome);
    this.record({ type: "report", ...report });
    return report;
  }
}
