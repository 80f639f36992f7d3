import fs from "node:fs/promises";
import { Workspace } from "../files/workspace.js";
import { loadAgents } from "../prompts.js";
import type { Tool, ToolContext } from "../server/tool.js";
import { runAgent, type Budget } from "./agent.js";
import ask from "./ask.js";
import { createDelegateTool } from "./delegation.js";
import { changes, keepCommit, materialise, snapshot } from "./git.js";
import { type LiveRun, note, persist } from "./live.js";
import type { chooseBackend, Message } from "./model.js";
import { emptyUsage } from "./pricing.js";
import type { TaskReport } from "./records.js";
import { outcomeWithoutAgent, writeReport, writeReportAnyway } from "./report.js";
import type { RunConfig } from "./runs.js";
import type { Scheduler } from "./scheduler.js";
import { recordFile, worktreeDir, writeRecord } from "./store.js";
import { verify } from "./verify/index.js";

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

export async function execute(live: LiveRun, ctx: ToolContext, prepared: Prepared, deps: RunDeps): Promise<TaskReport> {
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
    await deps.scheduler.acquire(live);
    const notes = await setup(live);
    if (prepared.backend.kind === "sampling")
      notes.push("Token and cost budgets are not enforced: MCP sampling reports no token usage.");
    started = Date.now();
    state.status = "running";
    await persist(live);
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
      progress: (m) => note(live, m),
      ask: ctx.ask,
    };
    const run = deps.config.tools.find((t) => t.name === "Run");
    const changedNow = async () =>
      changes(store, state.checkpoint!, await snapshot(store, state.workdir, `backend-agent state of ${state.run_id}`));
    const prev = prepared.previous;
    const budget: Budget = {
      maxTurns: state.max_turns,
      maxTokens: deps.config.maxTokens,
      maxCostUsd: prepared.budgetUsd ?? deps.config.maxBudgetUsd,
      deadline: started + deps.config.timeoutMs,
    };
    const partner = prepared.delegate
      ? createDelegateTool({
          agents: await loadAgents(root),
          parent: state.agent,
          tools: [...deps.config.tools, ask],
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
        void persist(live);
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
          testCommand: deps.config.testCommand,
          tmpdir: deps.config.checksTmpdir,
        });
      },
    });
    await live.saved;
    const report = await writeReport(store, state, {
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
    const aborted = live.abort.signal.aborted;
    const outcome = outcomeWithoutAgent(state, aborted ? "cancelled" : "error", Date.now() - started, {
      error: aborted ? undefined : (e as Error).message,
    });
    const report = await writeReportAnyway(store, state, outcome);
    record({ type: "report", ...report });
    return report;
  } finally {
    await written;
    for (const release of live.releases.splice(0)) release();
  }
}
