import { randomBytes } from "node:crypto";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { z } from "zod";
import { existingCommits, findGit, initGitDir, type GitDir } from "./git.js";
import {
  describeIssues,
  messagesSchema,
  RUN_ID,
  runStateSchema,
  taskReportSchema,
  type RunState,
  type TaskReport,
  type UnreadableRun,
  type WorkspaceRecord,
} from "./records.js";
import { isInside } from "../files/workspace.js";
import { writeFileAtomic } from "../files/folders.js";
import { ToolError } from "../server/errors.js";

/**
 * The server's state for one workspace, outside it: $XDG_STATE_HOME (default ~/.local/state)
 * /backend-developer-mcp/workspaces/<first 16 hex of sha256(workspace realpath)>/ holding workspace.json, git/ (the
 * checkpoint repository), runs/<run_id>/ (state.json, report.json, messages.json, transcript.jsonl) and
 * worktrees/<run_id>/. Neither the file tools (confined to the workspace) nor sandboxed commands (which may write
 * only the workspace, or their run's worktree, and a temp folder) can change it.
 */
export interface Store extends GitDir {
  workspace: string;
  dir: string;
  runsDir: string;
  worktreesDir: string;
}

const MAX_RECORD_BYTES = 16 * 1024 * 1024;

/** The folder holding every workspace's state folder. */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME || os.homedir(), ".local", "state");
  return path.join(base, "backend-developer-mcp");
}

/** The state folder of a workspace, given its real path. */
export const stateDirFor = (workspace: string, env: NodeJS.ProcessEnv = process.env) =>
  path.join(stateRoot(env), "workspaces", createHash("sha256").update(workspace).digest("hex").slice(0, 16));

/** Creates (or checks) the state folder of a workspace and its git directory. */
export async function openStore(workspace: string): Promise<Store> {
  const wanted = stateDirFor(workspace);
  await fs.mkdir(wanted, { recursive: true, mode: 0o700 });
  const dir = await fs.realpath(wanted);
  const root = await fs.realpath(stateRoot());
  if (isInside(workspace, dir)) {
    throw new ToolError(
      `The server's state folder ${dir} would be inside the workspace, where commands could change it. Set XDG_STATE_HOME to a folder outside ${workspace}.`,
    );
  }
  if (isInside(root, workspace)) {
    throw new ToolError(
      `The workspace ${workspace} is inside the server's state folder ${root}; choose a workspace outside it.`,
    );
  }
  const store: Store = {
    workspace,
    dir,
    gitDir: path.join(dir, "git"),
    home: dir,
    git: findGit(workspace),
    runsDir: path.join(dir, "runs"),
    worktreesDir: path.join(dir, "worktrees"),
  };
  for (const d of [store.runsDir, store.worktreesDir]) await ensureRealDir(d);
  await removeStaleTemps(dir);
  await initGitDir(store);
  const record: WorkspaceRecord = { workspace, created_at: new Date().toISOString() };
  await writeFileAtomic(path.join(dir, "workspace.json"), `${JSON.stringify(record, null, 2)}\n`);
  return store;
}

/** Temporary index folders left by a server that was killed (another live server's are younger than an hour). */
async function removeStaleTemps(dir: string): Promise<void> {
  const hourAgo = Date.now() - 3_600_000;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith("tmp-")) continue;
    const stat = await fs.lstat(path.join(dir, name)).catch(() => undefined);
    if (stat && stat.mtimeMs < hourAgo) await fs.rm(path.join(dir, name), { recursive: true, force: true });
  }
}

/** A folder that is a real folder (not a link to one), created when missing. */
async function ensureRealDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  if (!(await fs.lstat(dir)).isDirectory())
    throw new ToolError(`${dir} in the server's state folder is not a folder; remove it and try again.`);
}

/** Refuses anything but the server's run id format (arguments are validated already; this guards every path built). */
export function checkRunId(id: string): string {
  if (!RUN_ID.test(id))
    throw new ToolError(
      `"${id}" is not a run id (like 20260130-075600-1a2b3c). Call TaskOutput without run_id to list the runs.`,
    );
  return id;
}

export const runDir = (store: Store, id: string) => path.join(store.runsDir, checkRunId(id));
export const worktreeDir = (store: Store, id: string) => path.join(store.worktreesDir, checkRunId(id));
export const recordFile = (
  store: Store,
  id: string,
  name: "state.json" | "report.json" | "messages.json" | "transcript.jsonl",
) => path.join(runDir(store, id), name);

export async function writeRecord(
  store: Store,
  id: string,
  name: "state.json" | "report.json" | "messages.json",
  value: unknown,
): Promise<void> {
  await writeFileAtomic(recordFile(store, id, name), JSON.stringify(value, null, 2));
}

/** A record's text, never through a symbolic link and only from a regular file; undefined when absent. */
async function readRecordText(file: string): Promise<string | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new Error(
      code === "ELOOP"
        ? `${path.basename(file)} is a symbolic link`
        : `${path.basename(file)} cannot be read (${code})`,
    );
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${path.basename(file)} is not a regular file`);
    if (stat.size > MAX_RECORD_BYTES)
      throw new Error(`${path.basename(file)} is larger than ${MAX_RECORD_BYTES} bytes`);
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

/** Reads and validates one record; throws an Error saying what is wrong. */
async function readValid<S extends z.ZodType>(file: string, schema: S): Promise<z.infer<S> | undefined> {
  const text = await readRecordText(file);
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path.basename(file)} is not valid JSON (${(e as Error).message})`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new Error(`${path.basename(file)}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

export interface RunRecords {
  state?: RunState;
  report?: TaskReport;
}

/**
 * The records of one run, validated: the folder is a real folder named by a run id, each record matches its schema and
 * names this run, and a state's workdir is the workspace or this run's worktree. Throws an Error with the reason.
 */
export async function readRun(store: Store, id: string): Promise<RunRecords> {
  const dir = runDir(store, id);
  const stat = await fs.lstat(dir).catch(() => undefined);
  if (!stat) return {};
  if (!stat.isDirectory())
    throw new Error(stat.isSymbolicLink() ? "the run folder is a symbolic link" : "the run folder is not a folder");
  const state = await readValid(path.join(dir, "state.json"), runStateSchema);
  const report = await readValid(path.join(dir, "report.json"), taskReportSchema);
  for (const [name, r] of [
    ["state.json", state],
    ["report.json", report],
  ] as const) {
    if (r && r.run_id !== id) throw new Error(`${name} names run ${r.run_id}, not ${id}`);
  }
  if (state) await checkWorkdir(store, id, state.workdir);
  const commits = [state?.checkpoint, report?.checkpoint, report?.result].filter((c): c is string => Boolean(c));
  const existing = await existingCommits(store, commits);
  const missing = commits.find((c) => !existing.has(c));
  if (missing) throw new Error(`the checkpoint ${missing} is not a commit in the server's git directory`);
  return { state, report };
}

/** workdir must be the workspace, or the run's own worktree, both after resolving links. */
async function checkWorkdir(store: Store, id: string, workdir: string): Promise<void> {
  const allowed = [store.workspace, worktreeDir(store, id)];
  if (!allowed.includes(workdir))
    throw new Error(`state.json: workdir ${JSON.stringify(workdir)} is neither the workspace nor this run's worktree`);
  const real = await fs.realpath(workdir).catch(() => workdir);
  if (real !== workdir)
    throw new Error(`state.json: workdir ${JSON.stringify(workdir)} resolves to ${real} through a link`);
}

/** The saved conversation of a run, validated; undefined when there is none. */
export async function readMessages(store: Store, id: string) {
  return readValid(recordFile(store, id, "messages.json"), messagesSchema);
}

/** The entries of runs/, newest first: run ids, and anything else found there (which is never followed). */
export async function runFolders(store: Store): Promise<{ ids: string[]; strays: UnreadableRun[] }> {
  const entries = await fs.readdir(store.runsDir, { withFileTypes: true }).catch(() => []);
  const ids: string[] = [];
  const strays: UnreadableRun[] = [];
  for (const e of entries) {
    if (!RUN_ID.test(e.name)) strays.push({ name: e.name, reason: "the folder name is not a run id" });
    else if (e.isSymbolicLink()) strays.push({ name: e.name, reason: "the run folder is a symbolic link" });
    else if (!e.isDirectory()) strays.push({ name: e.name, reason: "the run folder is not a folder" });
    else ids.push(e.name);
  }
  return { ids: ids.sort().reverse(), strays };
}

/** A new run id: creation time (UTC) and 6 random hex digits. */
export function newRunId(): string {
  return `${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-")}-${randomBytes(3).toString("hex")}`;
}

/** Thrown for a run whose records failed validation: named with the reason, never followed. */
export class UnreadableRunError extends ToolError {
  constructor(
    readonly id: string,
    readonly reason: string,
  ) {
    super(`Run ${id} is unreadable and is not used: ${reason}.`);
  }
}
