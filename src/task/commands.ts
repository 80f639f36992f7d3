// The commands the server prints for a person or the model to run (revert, merge, discard): built from validated
// values only, every argument single-quoted, git pointed at the server's own git directory.
import { checkedId, type GitDir } from "./git.js";
import type { FileChange } from "./records.js";

/** One shell word: single-quoted, so nothing in it is expanded or split. */
export const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** `git` on the server's git directory and the workspace, as a person would type it (pathspecs taken literally). */
const gitFor = (repo: GitDir, workTree: string) =>
  `git --git-dir=${shellQuote(repo.gitDir)} --work-tree=${shellQuote(workTree)} --literal-pathspecs`;

/** A shell command that puts the changed files of the workspace back as they were at the checkpoint. */
export function revertCommand(repo: GitDir, workspace: string, checkpoint: string, changed: FileChange[]): string {
  if (!changed.length) return "(nothing to revert: no file changed)";
  const paths = (added: boolean) =>
    changed.filter((c) => (c.status === "added") === added).map((c) => shellQuote(c.path));
  const [restore, remove] = [paths(false), paths(true)];
  // Added files go first, so a file that replaced a folder (or a folder that replaced a link) is out of the way.
  return [
    `cd ${shellQuote(workspace)}`,
    ...(remove.length ? [`rm -f -- ${remove.join(" ")}`] : []),
    ...(restore.length
      ? [`${gitFor(repo, workspace)} restore --source=${checkedId(checkpoint)} --worktree -- ${restore.join(" ")}`]
      : []),
  ].join(" && ");
}

/** A shell command that applies a worktree run's changes (checkpoint → result) to the workspace; it changes nothing on a conflict. */
export function mergeCommand(repo: GitDir, workspace: string, checkpoint: string, result: string): string {
  const diff = `git --git-dir=${shellQuote(repo.gitDir)} diff --binary --no-renames --no-ext-diff --no-textconv ${checkedId(checkpoint)} ${checkedId(result)} --`;
  return `cd ${shellQuote(workspace)} && ${diff} | ${gitFor(repo, workspace)} apply --whitespace=nowarn -`;
}

/** A shell command that discards a worktree run: removes its worktree folder. */
export const discardWorktreeCommand = (dir: string) => `rm -rf -- ${shellQuote(dir)}`;
