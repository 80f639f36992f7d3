import { createHash } from "node:crypto";
import { accessSync, constants, realpathSync, statSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { sandboxPlaceholders } from "../sandbox/placeholders.js";
import { OBJECT_ID, type FileChange } from "./records.js";

/**
 * Checkpoints live in a git directory the server owns, in its state folder outside the workspace. Every git call
 * names that directory and the work tree explicitly, with system and global config off and HOME in the state
 * folder, so git never reads a `.git` (or its config, hooks, includes) from the workspace, top-level or nested.
 * The server writes that directory's whole config itself; attributes in the tree can then only name filters, diff
 * and merge drivers that exist in no config, so nothing runs, and info/attributes unsets them anyway.
 */

export interface GitDir {
  /** The server-owned git directory (<state>/git). */
  gitDir: string;
  /** The state folder: git's HOME and the working folder of calls that need no work tree. */
  home: string;
  /** The git executable and a PATH for it, from absolute PATH entries outside the workspace ({@link findGit}). */
  git: { file: string; path: string };
}

const IDENTITY = {
  GIT_AUTHOR_NAME: "backend-agent",
  GIT_AUTHOR_EMAIL: "backend-agent@localhost",
  GIT_COMMITTER_NAME: "backend-agent",
  GIT_COMMITTER_EMAIL: "backend-agent@localhost",
};

/** The whole config of the server's git directory, rewritten on every start. */
const CONFIG = `[core]
\trepositoryformatversion = 0
\tbare = false
\tfilemode = true
\tsymlinks = true
\tlogallrefupdates = false
\thooksPath = /dev/null
\tfsmonitor = false
\tuntrackedCache = false
\tautocrlf = false
\tsafecrlf = false
\tquotePath = false
\tattributesFile = /dev/null
\texcludesFile = /dev/null
\tpager = cat
[gc]
\tauto = 0
[maintenance]
\tauto = false
[diff]
\trenames = false
[commit]
\tgpgSign = false
[submodule]
\trecurse = false
[protocol]
\tallow = never
`;
/** Highest-precedence attributes: no filter, diff or merge driver, no line-ending or encoding conversion. */
const ATTRIBUTES = "* -text !eol !filter !diff !merge !ident !working-tree-encoding\n";
/** Folders never worth snapshotting (node_modules is also kept out by pathspec: a worktree links it). */
const EXCLUDES = "node_modules/\n.venv/\n__pycache__/\n";

/** git from the absolute PATH entries that are not inside the workspace (a planted `git` there must not run). */
export function findGit(workspace: string): GitDir["git"] {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return undefined;
    }
  };
  const dirs = (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((d) => path.isAbsolute(d) && !isWithin(workspace, real(d) ?? workspace));
  for (const dir of dirs) {
    const file = real(path.join(dir, "git"));
    if (!file || isWithin(workspace, file) || !statSync(file).isFile()) continue;
    try {
      accessSync(file, constants.X_OK);
      return { file, path: dirs.join(path.delimiter) };
    } catch {}
  }
  throw new Error("git was not found on the PATH (outside the workspace); install git to use Task checkpoints.");
}

const isWithin = (root: string, p: string) =>
  p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

/** The environment of every server-side git call: nothing from the server's own GIT_* variables. */
function gitEnv(repo: GitDir, workTree: string, extra: Record<string, string> = {}): Record<string, string> {
  const keep = Object.fromEntries(["LANG", "TZ"].flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
  return {
    ...keep,
    PATH: repo.git.path,
    HOME: repo.home,
    XDG_CONFIG_HOME: path.join(repo.home, "config"),
    GIT_DIR: repo.gitDir,
    GIT_WORK_TREE: workTree,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ATTR_NOSYSTEM: "1",
    GIT_TERMINAL_PROMPT: "0",
    GIT_OPTIONAL_LOCKS: "0",
    GIT_PAGER: "cat",
    ...IDENTITY,
    ...extra,
  };
}

/** Runs git on the server's git directory with workTree as the work tree; throws with git's last lines on failure. */
async function git(
  repo: GitDir,
  workTree: string,
  args: string[],
  opts: { env?: Record<string, string>; input?: string } = {},
): Promise<string> {
  const { execa } = await import("execa");
  const result = await execa(repo.git.file, args, {
    cwd: workTree,
    env: gitEnv(repo, workTree, opts.env),
    extendEnv: false,
    reject: false,
    stripFinalNewline: false,
    maxBuffer: 256 * 1024 * 1024,
    ...(opts.input === undefined ? { stdin: "ignore" as const } : { input: opts.input }),
  });
  if (result.exitCode !== 0) {
    throw new Error(
      `git ${args[0]} failed (exit ${result.exitCode ?? result.signal}): ${String(result.stderr).trim().split("\n").slice(-3).join(" ")}`,
    );
  }
  return String(result.stdout);
}

/** Creates the server's git directory when missing, and (re)writes its config, attributes and excludes. */
export async function initGitDir(repo: GitDir): Promise<void> {
  if (!(await fs.stat(path.join(repo.gitDir, "HEAD")).catch(() => undefined))) {
    await fs.mkdir(repo.gitDir, { recursive: true, mode: 0o700 });
    await git(repo, repo.home, ["init", "--quiet", "--template="]);
  }
  await fs.mkdir(path.join(repo.gitDir, "info"), { recursive: true });
  await fs.rm(path.join(repo.gitDir, "hooks"), { recursive: true, force: true });
  await fs.writeFile(path.join(repo.gitDir, "config"), CONFIG);
  await fs.writeFile(path.join(repo.gitDir, "info", "attributes"), ATTRIBUTES);
  await fs.writeFile(path.join(repo.gitDir, "info", "exclude"), EXCLUDES);
}

/** A temporary folder in the state folder (same file system as the index caches, so they can be renamed into place). */
const privateTemp = (repo: GitDir) => fs.mkdtemp(path.join(repo.home, "tmp-"));

/** An index cache per work tree, so each snapshot only rehashes the files that changed. */
const indexCache = (repo: GitDir, workTree: string) =>
  path.join(repo.gitDir, `index-${createHash("sha256").update(workTree).digest("hex").slice(0, 16)}`);

/** A commit of the work tree as it is on disk (files not ignored; a nested repository as its commit), through a private index. */
export async function snapshot(repo: GitDir, workTree: string, message: string): Promise<string> {
  const tmp = await privateTemp(repo);
  const index = path.join(tmp, "index");
  try {
    const cache = indexCache(repo, workTree);
    await fs.copyFile(cache, index).catch(() => undefined);
    const env = { GIT_INDEX_FILE: index };
    // A change the cached index cannot take in place (a folder that became a file or a link, or back) is staged
    // again from an empty index.
    await stage(repo, workTree, env).catch(async () => {
      await fs.rm(index, { force: true });
      await stage(repo, workTree, env);
    });
    const tree = (await git(repo, workTree, ["write-tree"], { env })).trim();
    const commit = (await git(repo, workTree, ["commit-tree", tree, "-m", message], { env })).trim();
    await fs.rename(index, cache).catch(() => undefined);
    return checkedId(commit);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** Files that differ from the index (or are not in it), honouring .gitignore; nested repositories as `sub/`. */
const LIST_CHANGED = ["ls-files", "-z", "--others", "--modified", "--deleted", "--exclude-standard", "--", "."];

/**
 * Brings the index in line with the work tree. Not `git add`: for a nested repository that runs `git status` there,
 * with that repository's config. ls-files and update-index only read a nested repository's HEAD (kept as a gitlink).
 */
async function stage(repo: GitDir, workTree: string, env: Record<string, string>): Promise<void> {
  // The sandbox's placeholder files (kept for hours by a background server) are never part of a checkpoint.
  const placeholders = (await sandboxPlaceholders(workTree)).map((p) => `:(exclude,literal)${p}`);
  const listed = await git(repo, workTree, [...LIST_CHANGED, ":(exclude)node_modules", ...placeholders], { env });
  if (listed)
    await git(repo, workTree, ["update-index", "-z", "--add", "--remove", "--replace", "--stdin"], {
      env,
      input: listed,
    });
}

export function checkedId(id: string): string {
  if (!OBJECT_ID.test(id)) throw new Error(`git returned "${id.slice(0, 80)}" where an object id was expected`);
  return id;
}

/** Keeps a commit reachable under refs/backend-agent/<name> (the name is a validated run id). */
export async function keepCommit(repo: GitDir, name: string, commit: string): Promise<void> {
  await git(repo, repo.home, ["update-ref", `refs/backend-agent/${name}`, checkedId(commit)]);
}

/** The ids among ids that name commits in the server's git directory. */
export async function existingCommits(repo: GitDir, ids: string[]): Promise<Set<string>> {
  const valid = [...new Set(ids.filter((id) => OBJECT_ID.test(id)))];
  if (!valid.length) return new Set();
  const out = await git(repo, repo.home, ["cat-file", "--batch-check=%(objectname) %(objecttype)"], {
    input: `${valid.join("\n")}\n`,
  });
  return new Set(
    out
      .split("\n")
      .filter((l) => l.endsWith(" commit"))
      .map((l) => l.split(" ")[0]!),
  );
}

/** Files that differ between two snapshots, with line counts (NUL-separated, so any file name works). */
export async function changes(repo: GitDir, from: string, to: string): Promise<FileChange[]> {
  const diff = (format: string) =>
    git(repo, repo.home, [
      "diff",
      format,
      "-z",
      "--no-renames",
      "--no-ext-diff",
      "--no-textconv",
      "--ignore-submodules=none",
      checkedId(from),
      checkedId(to),
      "--",
    ]);
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
      return {
        path: file,
        status: s === "A" ? "added" : s === "D" ? "deleted" : "modified",
        insertions: Number(ins) || 0,
        deletions: Number(del) || 0,
      };
    });
}

/** Writes the files of commit into dir through a private index; returns that index (in tmp) for the caller to keep or drop. */
async function checkout(repo: GitDir, commit: string, dir: string, tmp: string): Promise<string> {
  const env = { GIT_INDEX_FILE: path.join(tmp, "index") };
  await git(repo, dir, ["read-tree", checkedId(commit)], { env });
  await git(repo, dir, ["checkout-index", "--all", "--force"], { env });
  return env.GIT_INDEX_FILE;
}

/** Writes the files of commit into dir (which must not exist yet); node_modules is linked from the workspace so tests can run. */
export async function materialise(repo: GitDir, commit: string, dir: string, workspace: string): Promise<string> {
  await fs.mkdir(dir, { mode: 0o700 });
  const tmp = await privateTemp(repo);
  try {
    const index = await checkout(repo, commit, dir, tmp);
    // The worktree's snapshots start from this index: a nested repository (an empty folder here) stays as its commit.
    await fs.rename(index, indexCache(repo, await fs.realpath(dir)));
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  const modules = path.join(workspace, "node_modules");
  if (await fs.stat(modules).catch(() => undefined))
    await fs.symlink(modules, path.join(dir, "node_modules"), "dir").catch(() => undefined);
  return fs.realpath(dir);
}

/** Writes the files of commit into an existing empty folder, leaving no trace in the server's git directory. */
export async function exportTree(repo: GitDir, commit: string, dir: string): Promise<void> {
  const tmp = await privateTemp(repo);
  try {
    await checkout(repo, commit, dir, tmp);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** A file's text as it was in commit (rel: a workspace-relative path), or undefined when it did not exist. */
export async function readBlob(repo: GitDir, commit: string, rel: string): Promise<string | undefined> {
  if (rel.split("/").some((s) => s === ".." || s === "") || rel.includes("\0")) return undefined;
  return git(repo, repo.home, ["cat-file", "blob", `${checkedId(commit)}:${rel}`]).catch(() => undefined);
}
