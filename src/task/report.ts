import { changes, keepCommit, snapshot } from "./git.js";
import { discardWorktreeCommand, mergeCommand, revertCommand } from "./commands.js";
import fs from "node:fs/promises";
import type { ChildRun, FileChange, RunState, TaskReport } from "./records.js";
import { newRunId, recordFile, runDir, type Store, worktreeDir, writeRecord } from "./store.js";

/** How a run ended, as the server writes it: report.json from the outcome, files changed since the checkpoint. */

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

/** Writes the final report: files changed since the checkpoint, and how to revert (or merge, for a worktree). */
export async function writeReport(store: Store, state: RunState, r: Outcome): Promise<TaskReport> {
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

/** writeReport, or, when even that fails (git failing, a worktree removed), the report without the file list. */
export function writeReportAnyway(store: Store, state: RunState, outcome: Outcome): Promise<TaskReport> {
  return writeReport(store, state, outcome).catch((failure: Error) =>
    writeReport(
      store,
      { ...state, checkpoint: undefined },
      { ...outcome, notes: [...outcome.notes, `Could not list the changes: ${failure.message}`] },
    ),
  );
}

/** The outcome of a run that ended without an answer from the agent loop: stopped, failed, or orphaned by a crash. */
export function outcomeWithoutAgent(
  state: RunState,
  status: "cancelled" | "error" | "interrupted",
  durationMs: number,
  extra: { error?: string; notes?: string[] } = {},
): Outcome {
  return {
    status,
    summary: "",
    verification: null,
    usage: state.usage,
    cost_usd: state.cost_usd,
    model_calls: state.model_calls,
    turns: state.turn,
    fix_rounds: 0,
    duration_ms: durationMs,
    ...(extra.error && { error: extra.error }),
    notes: extra.notes ?? [],
  };
}

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

/**
 * A finished delegation as a run record of its own (report only), linked to the parent run: its files and checks are
 * the parent's (the same workspace and checkpoint), its steps are in the parent's transcript tagged "child".
 */
export async function writeChildRecord(store: Store, parent: RunState, child: ChildRun): Promise<string> {
  const id = newRunId();
  await fs.mkdir(runDir(store, id));
  const report: TaskReport = {
    kind: "report",
    run_id: id,
    parent_run_id: parent.run_id,
    status: child.status,
    description: child.description,
    agent: child.agent,
    model: parent.model,
    summary: child.summary,
    files_changed: [],
    verification: null,
    usage: child.usage,
    cost_usd: child.cost_usd,
    model_calls: child.model_calls,
    turns: child.turns,
    fix_rounds: 0,
    duration_ms: 0,
    transcript: "",
    revert_command: "",
    isolation: "none",
    ...(child.error && { error: child.error }),
    notes: [
      `Delegated by run ${parent.run_id}: its changes, checks and revert command are that run's; its steps are in that run's transcript (events tagged "child").`,
    ],
  };
  await writeRecord(store, id, "report.json", report);
  return id;
}
