import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { SimpleGit } from "simple-git";
import { sandboxPlaceholders } from "./placeholders.js";

export const RUNS_DIR = ".backend-agent";
const IDENTITY = { GIT_AUTHOR_NAME: "backend-agent", GIT_AUTHOR_EMAIL: "backend-agent@localhost", GIT_COMMITTER_NAME: "backend-agent", GIT_COMMITTER_EMAIL: "backend-agent@localhost" };

export interface FileChange {
  path: string;
  status: "added" | "modified" | "deleted";
  insertions: number;
  deletions: number;
}

const SAFE_CONFIG = ["core.fsmonitor=false", "core.hooksPath=/dev/null", "diff.external=", "core.untrackedCache=false"];
/** Folders never worth snapshotting, added to the exclude file of a repository the server initialises. */
const DEFAULT_EXCLUDES = ["node_modules/", ".venv/", "__pycache__/"];

export const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

async function gitIn(dir: string, env: Record<string, string> = {}): Promise<SimpleGit> {
  const { simpleGit } = await import("simple-git");
  const base = Object.fromEntries(["PATH", "HOME", "LANG", "TMPDIR"].flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
  // The server runs git outside the sandbox: no hooks, no fsmonitor, no external diff or textconv programs.
  return simpleGit({ baseDir: dir, allowEnvironment: [...Object.keys(IDENTITY), "GIT_INDEX_FILE"], config: SAFE_CONFIG, unsafe: { allowUnsafeFsMonitor: true, allowUnsafeHooksPath: true, allowUnsafeDiffExternal: true } }).env({ ...base, ...IDENTITY, ...env });
}

/** Makes sure the workspace is in a git repository whose exclude file ignores the agent's run records. */
export async function ensureRepo(workspace: string): Promise<{ initialised: boolean }> {
  const git = await gitIn(workspace);
  let initialised = false;
  if (!(await git.checkIsRepo())) {
    await git.init();
    initialised = true;
  }
  const gitDir = path.resolve(workspace, (await git.revparse(["--git-dir"])).trim());
  const exclude = path.join(gitDir, "info", "exclude");
  const current = await fs.readFile(exclude, "utf8").catch(() => "");
  const missing = [`${RUNS_DIR}/`, ...(initialised ? DEFAULT_EXCLUDES : [])].filter((line) => !current.split("\n").includes(line));
  if (missing.length) {
    await fs.mkdir(path.dirname(exclude), { recursive: true });
    await fs.appendFile(exclude, `${current && !current.endsWith("\n") ? "\n" : ""}${missing.join("\n")}\n`);
  }
  return { initialised };
}

/** A commit of the workspace as it is on disk (tracked and untracked, not ignored), made through a private index: branch, index and stash stay untouched. */
export async function snapshot(workspace: string, message: string): Promise<string> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "backend-agent-index-"));
  const index = path.join(tmp, "index");
  try {
    const git = await gitIn(workspace, { GIT_INDEX_FILE: index });
    const gitDir = path.resolve(workspace, (await git.revparse(["--git-dir"])).trim());
    await fs.copyFile(path.join(gitDir, "index"), index).catch(() => undefined);
    // node_modules stays out even when not ignored: a worktree links it from the workspace.
    // [services/background] hook: the sandbox's placeholder files are never part of a checkpoint (src/placeholders.ts).
    const placeholders = (await sandboxPlaceholders(workspace)).map((p) => `:(exclude,literal)${p}`);
    await git.raw(["add", "-A", "--", ".", ":(exclude)node_modules", ...placeholders]);
    const tree = (await git.raw(["write-tree"])).trim();
    const head = await git.revparse(["--verify", "-q", "HEAD"]).then((h) => h.trim(), () => "");
    return (await git.raw(["commit-tree", tree, ...(head ? ["-p", head] : []), "-m", message])).trim();
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

export async function setRef(workspace: string, ref: string, commit: string): Promise<void> {
  await (await gitIn(workspace)).raw(["update-ref", ref, commit]);
}

/** Files that differ between two snapshots, with line counts, limited to the workspace (NUL-separated, so any file name works). */
export async function changes(workspace: string, from: string, to: string): Promise<FileChange[]> {
  const git = await gitIn(workspace);
  const diff = (format: string) => git.raw(["diff", format, "-z", "--relative", "--no-renames", "--no-ext-diff", "--no-textconv", from, to, "--", "."]);
  const [numstat, status] = await Promise.all([diff("--numstat"), diff("--name-status")]);
  const kinds = new Map<string, string>();
  const tokens = status.split("\0");
  for (let i = 0; i + 1 < tokens.length; i += 2) kinds.set(tokens[i + 1]!, tokens[i]!);
  return numstat
    .split("\0")
    .filter(Boolean)
    .map((record) => {
      const [ins = "", del = "", ...name] = record.split("\t");
      const file = name.join("\t");
      const s = kinds.get(file);
      return { path: file, status: s === "A" ? "added" : s === "D" ? "deleted" : "modified", insertions: Number(ins) || 0, deletions: Number(del) || 0 };
    });
}

/** A shell command that puts the workspace back as it was at the checkpoint. */
export function revertCommand(workspace: string, ref: string, changed: FileChange[]): string {
  if (!changed.length) return "(nothing to revert: no file changed)";
  const paths = (added: boolean) => changed.filter((c) => (c.status === "added") === added).map((c) => shellQuote(c.path));
  const [restore, remove] = [paths(false), paths(true)];
  const steps = [`cd ${shellQuote(workspace)}`, ...(restore.length ? [`git restore --source=${ref} --worktree -- ${restore.join(" ")}`] : []), ...(remove.length ? [`rm -f -- ${remove.join(" ")}`] : [])];
  return steps.join(" && ");
}


/** A detached git worktree of the checkpoint at dir; node_modules is linked from the workspace so tests can run. */
export async function addWorktree(workspace: string, ref: string, dir: string): Promise<string> {
  await fs.mkdir(path.dirname(dir), { recursive: true });
  await (await gitIn(workspace)).raw(["worktree", "add", "--detach", dir, ref]);
  const modules = path.join(workspace, "node_modules");
  if (await fs.stat(modules).catch(() => undefined)) await fs.symlink(modules, path.join(dir, "node_modules"), "dir").catch(() => undefined);
  return fs.realpath(dir);
}

/** A shell command that applies a worktree run's changes to the workspace. */
export function mergeCommand(workspace: string, from: string, to: string): string {
  return `cd ${shellQuote(workspace)} && git diff --binary --relative ${from} ${to} -- . > .backend-agent-merge.patch && git apply .backend-agent-merge.patch && rm .backend-agent-merge.patch`;
}
