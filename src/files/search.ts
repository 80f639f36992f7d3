// The search engine Grep and Glob share: ripgrep run with an argument array (never a shell string), bounded in time,
// and the helpers that list its results within the result limit.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { MAX_RESULT_CHARS, type ToolContext } from "../server/tool.js";
import { ToolError } from "../server/errors.js";
import { ripgrepPath } from "./ripgrep.js";
import { Records, type RgSink } from "./rg-output.js";

/** What a listing may take of a result, leaving room for its header and notes. */
export const OUTPUT_BUDGET = MAX_RESULT_CHARS - 2_000;

/** Flags shared by Grep and Glob: hidden files included, .git excluded, .gitignore respected even outside a git repo. */
export const RG_BASE = ["--no-config", "--hidden", "--glob", "!.git", "--no-require-git", "--no-messages"];
const MTIME_SORT_LIMIT = 1_000;
/** How many found files MtimeList stats as they come in, before knowing whether the list stays within the limit. */
const STAT_AS_ADDED = 128;
/** Every ripgrep run is stopped after this long. */
const SEARCH_TIMEOUT_MS = 60_000;
/** stderr kept for the error message (rg with --no-messages writes little). */
const MAX_STDERR_CHARS = 64_000;

/** One line on how to fix the pattern, when ripgrep could not parse it. */
const hint = (stderr: string) =>
  /regex parse error/.test(stderr)
    ? '\nThe pattern is a regular expression (Rust syntax): escape a special character with a backslash to match it literally, e.g. "\\(" or "\\." (or put it in brackets: "[(]").'
    : "";

/** How rg ended: exit code (2 if it never ran or was killed), signal, stderr, and whether we stopped it. */
interface RgExit {
  exitCode: number;
  signal: NodeJS.Signals | null;
  stderr: string;
  cancelled: boolean;
  timedOut: boolean;
}

/**
 * Spawns rg (no shell) in cwd and passes its stdout on as raw chunks; kills it on abort or after the time bound.
 * node:child_process directly: execa costs about 2 ms per search, a tenth of a small one.
 */
async function spawnRg(
  args: string[],
  cwd: string,
  abort: AbortSignal,
  onChunk: (chunk: Buffer) => void,
): Promise<RgExit> {
  // The message execa gave: a NUL cannot be passed in an argument.
  const nul = args.find((a) => a.includes("\0"));
  if (nul !== undefined) throw new TypeError(`Arguments cannot contain null bytes ("\\0"): ${nul}`);
  const rg = await ripgrepPath();
  return new Promise((resolve) => {
    const child = spawn(rg, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let [stderr, cancelled, timedOut, spawnError] = ["", false, false, ""];
    const onAbort = () => {
      cancelled = true;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, SEARCH_TIMEOUT_MS);
    abort.addEventListener("abort", onAbort, { once: true });
    if (abort.aborted) onAbort();
    child.stdout.on("data", onChunk);
    child.stderr.setEncoding("utf8").on("data", (d: string) => stderr.length < MAX_STDERR_CHARS && (stderr += d));
    child.on("error", (e) => (spawnError = e.message));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      abort.removeEventListener("abort", onAbort);
      const failed = code === null || code < 0 || spawnError !== "";
      resolve({ exitCode: failed ? 2 : code, signal, stderr: stderr || spawnError, cancelled, timedOut });
    });
  });
}

/** Runs rg with an argument array (never a shell string) in the workspace root, calling onLine per stdout record. */
export function runRg(
  args: string[],
  ctx: ToolContext,
  onLine: (line: string) => void,
  sep = "\n",
): Promise<{ exitCode: number; stderr: string }> {
  return runRgTo(args, ctx, new Records(onLine, sep));
}

/** Runs rg like runRg, passing its stdout to sink as it arrives. */
export async function runRgTo(
  args: string[],
  ctx: ToolContext,
  sink: RgSink,
): Promise<{ exitCode: number; stderr: string }> {
  const { exitCode, stderr, cancelled, timedOut, signal } = await spawnRg(args, ctx.ws.root, ctx.signal, (chunk) =>
    sink.write(chunk),
  );
  sink.end();
  if (cancelled) throw new ToolError("Cancelled.");
  if (timedOut)
    throw new ToolError(
      `The search was stopped after ${SEARCH_TIMEOUT_MS / 1000} s. Narrow it with path, glob or type.`,
    );
  // Exit 2 without a message: --no-messages hid unreadable files, or the filters left no file to search.
  if (exitCode > 1 && (stderr.trim() || signal))
    throw new ToolError(`ripgrep failed: ${stderr.trim() || `killed by ${signal}`}${hint(stderr)}`);
  return { exitCode, stderr };
}

/** Resolves the optional search path to an rg operand relative to the workspace root. */
export async function searchTarget(p: string | undefined, ctx: ToolContext): Promise<string[]> {
  if (!p) return [];
  const abs = await ctx.ws.resolve(p);
  const st = await fs.promises.stat(abs).catch(() => {
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

/** A file's modification time, or 0 when it cannot be read (gone, a broken link…). */
function mtimeOf(abs: string): number {
  try {
    return fs.statSync(abs, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  } catch {
    return 0;
  }
}

/**
 * Found files, listed newest first when there are few enough to stat cheaply, else by path with a note saying so.
 * The first STAT_AS_ADDED files are stat'ed as they are added, so while rg is still searching (a synchronous stat costs
 * a few microseconds, far less than a round trip through the thread pool); any more only once the list is known to
 * stay within the limit, so a list past it wastes at most STAT_AS_ADDED stats (well under 1 ms).
 */
export class MtimeList {
  private readonly files: string[] = [];
  private readonly times: number[] = [];
  private readonly seen = new Set<string>();

  constructor(private readonly root: string) {}

  get size(): number {
    return this.files.length;
  }

  add(file: string): void {
    if (this.seen.has(file)) return;
    this.seen.add(file);
    this.files.push(file);
    if (this.files.length <= STAT_AS_ADDED) this.times.push(mtimeOf(path.join(this.root, file)));
  }

  sorted(): { sorted: string[]; note: string } {
    const { files, times } = this;
    if (files.length > MTIME_SORT_LIMIT)
      return { sorted: files.sort(), note: ` (sorted by path: over ${MTIME_SORT_LIMIT} files)` };
    for (let i = times.length; i < files.length; i++) times.push(mtimeOf(path.join(this.root, files[i]!)));
    const order = files.map((_, i) => i);
    order.sort((a, b) => times[b]! - times[a]! || files[a]!.localeCompare(files[b]!));
    return { sorted: order.map((i) => files[i]!), note: "" };
  }
}

/** Newest first when the list is small enough to stat cheaply, else by path with a note saying so. */
export function sortByMtime(files: string[], root: string): { sorted: string[]; note: string } {
  if (files.length > MTIME_SORT_LIMIT)
    return { sorted: files.sort(), note: ` (sorted by path: over ${MTIME_SORT_LIMIT} files)` };
  const list = new MtimeList(root);
  for (const f of files) list.add(f);
  return list.sorted();
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
