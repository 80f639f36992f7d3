import fs from "node:fs/promises";
import path from "node:path";
import { rgPath } from "@vscode/ripgrep";
import { z } from "zod";
import { defineTool, MAX_RESULT_CHARS, type ToolContext } from "../server/tool.js";
import { ToolError } from "../files/workspace.js";

/** Flags shared by Grep and Glob: hidden files included, .git excluded, .gitignore respected even outside a git repo. */
export const RG_BASE = ["--no-config", "--hidden", "--glob", "!.git", "--no-require-git", "--no-messages"];
const MAX_LINE_CHARS = 500;
const OUTPUT_BUDGET = MAX_RESULT_CHARS - 2_000;
const MTIME_SORT_LIMIT = 1_000;
/** Every ripgrep run is stopped after this long. */
const SEARCH_TIMEOUT_MS = 60_000;

/** One line on how to fix the pattern, when ripgrep could not parse it. */
const hint = (stderr: string) =>
  /regex parse error/.test(stderr)
    ? '\nThe pattern is a regular expression (Rust syntax): escape a special character with a backslash to match it literally, e.g. "\\(" or "\\." (or put it in brackets: "[(]").'
    : "";

/** Runs rg with an argument array (never a shell string) in the workspace root, calling onLine per stdout line. */
export async function runRg(args: string[], ctx: ToolContext, onLine: (line: string) => void): Promise<{ exitCode: number; stderr: string }> {
  const { execa } = await import("execa");
  const child = execa(rgPath, args, { cwd: ctx.ws.root, cancelSignal: ctx.signal, timeout: SEARCH_TIMEOUT_MS, reject: false, buffer: { stdout: false, stderr: true }, stdin: "ignore" });
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
  if (timedOut) throw new ToolError(`The search was stopped after ${SEARCH_TIMEOUT_MS / 1000} s. Narrow it with path, glob or type.`);
  // Exit 2 without a message: --no-messages hid unreadable files, or the filters left no file to search.
  if (exitCode > 1 && (String(stderr).trim() || signal)) throw new ToolError(`ripgrep failed: ${String(stderr).trim() || `killed by ${signal}`}${hint(String(stderr))}`);
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
  if (!st.isFile() && !st.isDirectory()) throw new ToolError(`${p} is not a regular file or folder; give a file or folder to search.`);
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
  if (files.length > MTIME_SORT_LIMIT) return { sorted: files.sort(), note: ` (sorted by path: over ${MTIME_SORT_LIMIT} files)` };
  const stamped = await Promise.all(files.map(async (f) => ({ f, t: await fs.stat(path.join(root, f)).then((s) => s.mtimeMs, () => 0) })));
  return { sorted: stamped.sort((a, b) => b.t - a.t || a.f.localeCompare(b.f)).map((s) => s.f), note: "" };
}

export const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;

/** Takes entries while they fit the result budget and head_limit; says what was left out. */
export function fitEntries(entries: string[], headLimit: number | undefined, total: number, noun: string, hint: string): string {
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

type RgText = { text?: string; bytes?: string };
const decode = (v: RgText | undefined) => (v?.text ?? Buffer.from(v?.bytes ?? "", "base64").toString("utf8"));

export default defineTool({
  name: "Grep",
  title: "Search file contents",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.object({
    pattern: z.string().min(1).describe("Regular expression to search for (Rust regex syntax, as ripgrep)"),
    path: z.string().optional().describe("File or folder to search, relative to the workspace root (default: the whole workspace)"),
    glob: z.string().optional().describe('Only search files matching this glob, e.g. "*.ts" or "src/**/*.{ts,tsx}"'),
    type: z.string().optional().describe('Only search files of this ripgrep type, e.g. "ts", "py", "go"'),
    output_mode: z.enum(["files_with_matches", "content", "count"]).default("files_with_matches").describe("files_with_matches (default): paths; content: matching lines; count: matches per file"),
    "-i": z.boolean().optional().describe("Case-insensitive search"),
    "-n": z.boolean().optional().describe("Show line numbers in content mode (default true)"),
    "-A": z.number().int().min(0).max(100).optional().describe("Lines of context after each match (content mode)"),
    "-B": z.number().int().min(0).max(100).optional().describe("Lines of context before each match (content mode)"),
    "-C": z.number().int().min(0).max(100).optional().describe("Lines of context before and after each match (content mode)"),
    multiline: z.boolean().optional().describe("Let patterns span lines; . also matches newlines"),
    head_limit: z.number().int().min(1).optional().describe("Show at most this many lines or entries"),
  }),
  async handle(a, ctx) {
    const args = [...RG_BASE];
    if (a["-i"]) args.push("--ignore-case");
    if (a.multiline) args.push("--multiline", "--multiline-dotall");
    if (a.glob) args.push("--glob", a.glob);
    if (a.type) args.push("--type", a.type);
    const target = await searchTarget(a.path, ctx);
    const operands = ["-e", a.pattern, "--", ...target];
    const allowed = a.glob ? await unignored(target, ctx) : undefined;
    const visible = (file: string) => !allowed || allowed.has(file);
    const narrow = "Narrow the search with path, glob or type, or a more specific pattern.";

    if (a.output_mode === "files_with_matches" || a.output_mode === "count") {
      const counts = new Map<string, string>();
      const mode = a.output_mode === "count" ? ["--count", "--with-filename"] : ["--files-with-matches"];
      await runRg([...args, ...mode, "--null", ...operands], ctx, (line) => {
        if (a.output_mode === "files_with_matches") {
          for (const file of line.split("\0")) if (file && visible(file)) counts.set(file, "");
          return;
        }
        const [file = "", count = ""] = line.split("\0");
        if (visible(file)) counts.set(file, count);
      });
      if (counts.size === 0) return { text: "No matches found." };
      if (a.output_mode === "files_with_matches") {
        const { sorted, note } = await sortByMtime([...counts.keys()], ctx.ws.root);
        return { text: `Found ${plural(sorted.length, "file")}${note}\n${fitEntries(sorted, a.head_limit, sorted.length, "files", narrow)}` };
      }
      const rows = [...counts].sort(([x], [y]) => x.localeCompare(y)).map(([f, n]) => `${f}:${n}`);
      const total = [...counts.values()].reduce((s, n) => s + Number(n), 0);
      return { text: `${plural(total, "matching line")} in ${plural(rows.length, "file")}\n${fitEntries(rows, a.head_limit, rows.length, "files", narrow)}` };
    }

    const context = a["-C"] ?? 0;
    const [after, before] = [a["-A"] ?? context, a["-B"] ?? context];
    if (after) args.push("--after-context", String(after));
    if (before) args.push("--before-context", String(before));
    const numbers = a["-n"] ?? true;
    const rows: string[] = [];
    let [total, shown, size, full] = [0, 0, 0, false];
    let prev: { file: string; line: number } | undefined;
    await runRg([...args, "--json", ...operands], ctx, (raw) => {
      const isMatch = raw.startsWith('{"type":"match"');
      if (!isMatch && !raw.startsWith('{"type":"context"')) return;
      if (full && !allowed) {
        if (isMatch) total++;
        return;
      }
      const { data } = JSON.parse(raw) as { data: { path: RgText; lines: RgText; line_number: number } };
      const file = decode(data.path);
      if (!visible(file)) return;
      if (isMatch) total++;
      if (full) return;
      const text = decode(data.lines).replace(/\r?\n$/, "");
      const sep = isMatch ? ":" : "-";
      const clipped = text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}… [${text.length} chars]` : text;
      const row = numbers ? `${file}${sep}${data.line_number}${sep}${clipped}` : `${file}${sep}${clipped}`;
      if ((a.head_limit !== undefined && rows.length >= a.head_limit) || size + row.length > OUTPUT_BUDGET) {
        full = true;
        return;
      }
      if ((after || before) && prev && (prev.file !== file || data.line_number > prev.line + 1)) rows.push("--");
      prev = { file, line: data.line_number + text.split("\n").length - 1 };
      rows.push(row);
      size += row.length + 1;
      if (isMatch) shown++;
    });
    if (total === 0) return { text: "No matches found." };
    const note = total > shown ? `\n\n[${total - shown} more matching lines left out (${shown} of ${total} shown). ${narrow}]` : "";
    return { text: rows.join("\n") + note };
  },
});
