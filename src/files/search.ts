// The search engine Grep and Glob share: ripgrep run with an argument array (never a shell string), bounded in time,
// and the helpers that list its results within the result limit.
import fs from "node:fs/promises";
import path from "node:path";
import { MAX_RESULT_CHARS, type ToolContext } from "../server/tool.js";
import { ToolError } from "../server/errors.js";
import { ripgrepPath } from "./ripgrep.js";

/** What a listing may take of a result, leaving room for its header and notes. */
export const OUTPUT_BUDGET = MAX_RESULT_CHARS - 2_000;

/** Flags shared by Grep and Glob: hidden files included, .git excluded, .gitignore respected even outside a git repo. */
export const RG_BASE = ["--no-config", "--hidden", "--glob", "!.git", "--no-require-git", "--no-messages"];
const MTIME_SORT_LIMIT = 1_000;
/** Every ripgrep run is stopped after this long. */
const SEARCH_TIMEOUT_MS = 60_000;

/** One line on how to fix the pattern, when ripgrep could not parse it. */
const hint = (stderr: string) =>
  /regex parse error/.test(stderr)
    ? '\nThe pattern is a regular expression (Rust syntax): escape a special character with a backslash to match it literally, e.g. "\\(" or "\\." (or put it in brackets: "[(]").'
    : "";

/** Runs rg with an argument array (never a shell string) in the workspace root, calling onLine per stdout line. */
export async function runRg(
  args: string[],
  ctx: ToolContext,
  onLine: (line: string) => void,
): Promise<{ exitCode: number; stderr: string }> {
  const { execa } = await import("execa");
  const child = execa(await ripgrepPath(), args, {
    cwd: ctx.ws.root,
    cancelSignal: ctx.signal,
    timeout: SEARCH_TIMEOUT_MS,
    reject: false,
    buffer: { stdout: false, stderr: true },
    stdin: "ignore",
  });
  // Splitting chunks by hand is several times faster than a line iterator on large outputs.
  let rest = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop()!;
    for (const line of lines) onLine(line);
  });
  const { exitCode = 2, stderr, isCanceled, timedOut, signal } = await child;
  if (rest) onLine(rest);
  if (isCanceled) throw new ToolError("Cancelled.");
  if (timedOut)
    throw new ToolError(
      `The search was stopped after ${SEARCH_TIMEOUT_MS / 1000} s. Narrow it with path, glob or type.`,
    );
  // Exit 2 without a message: --no-messages hid unreadable files, or the filters left no file to search.
  if (exitCode > 1 && (String(stderr).trim() || signal))
    throw new ToolError(`ripgrep failed: ${String(stderr).trim() || `killed by ${signal}`}${hint(String(stderr))}`);
  return { exitCode, stderr: String(stderr) };
}

/** Resolves the optional search path to an rg operand relative to the workspace root. */
export async function searchTarget(p: string | undefined, ctx: ToolContext): Promise<string[]> {
  if (!p) return [];
  const abs = await ctx.ws.resolve(p);
  const st = await fs.stat(abs).catch(() => {
    throw new ToolError(`Path not found: ${p}. Give an existing file or folder inside the workspace.`);
  });
  // A FIFO or device would block ripgrep forever.
  if (!st.isFile() && !st.isDirectory())
    throw new ToolError(`${p} is not a regular file or folder; give a file or folder to search.`);
  const rel = ctx.ws.relative(abs);
  return rel === "." ? [] : [rel];
}

/** The files rg lists without a --glob: a --glob whitelists files that .gitignore skips, so results are checked against these. */
export async function unignored(target: string[], ctx: ToolContext): Promise<Set<string>> {
  const files = new Set<string>();
  await runRg([...RG_BASE, "--files", "--", ...target], ctx, (line) => files.add(line));
  return files;
}

/** Newest first when the list is small enough to stat cheaply, else by path with a note saying so. */
export async function sortByMtime(files: string[], root: string): Promise<{ sorted: string[]; note: string }> {
  if (files.length > MTIME_SORT_LIMIT)
    return { sorted: files.sort(), note: ` (sorted by path: over ${MTIME_SORT_LIMIT} files)` };
  const stamped = await Promise.all(
    files.map(async (f) => ({
      f,
      t: await fs.stat(path.join(root, f)).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
    })),
  );
  return { sorted: stamped.sort((a, b) => b.t - a.t || a.f.localeCompare(b.f)).map((s) => s.f), note: "" };
}

export const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;

/** Takes entries while they fit the result budget and head_limit; says what was left out. */
export function fitEntries(
  entries: string[],
  headLimit: number | undefined,
  total: number,
  noun: string,
  hint: string,
): string {
  const out: string[] = [];
  let size = 0;
  const cap = headLimit ?? Infinity;
  for (const e of entries) {
    if (out.length >= cap || size + e.length + 1 > OUTPUT_BUDGET) break;
    out.push(e);
    size += e.length + 1;
  }
  const left = total - out.length;
  if (left > 0) out.push(`\n[${left} more ${noun} left out (${out.length} of ${total} shown). ${hint}]`);
  return out.join("\n");
}
