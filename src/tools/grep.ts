import { z } from "zod";
import {
  fitEntries,
  MtimeList,
  OUTPUT_BUDGET,
  plural,
  RG_BASE,
  runRg,
  runRgTo,
  searchTarget,
  unignored,
} from "../files/search.js";
import { JsonLines } from "../files/rg-output.js";
import { defineTool, type ToolContext } from "../server/tool.js";

const MAX_LINE_CHARS = 500;

type RgText = { text?: string; bytes?: string };
/** The text without its line end (a final \n or \r\n). */
const withoutEol = (t: string) => (t.endsWith("\n") ? t.slice(0, t.endsWith("\r\n") ? -2 : -1) : t);
const decode = (v: RgText | undefined) => v?.text ?? Buffer.from(v?.bytes ?? "", "base64").toString("utf8");

const NARROW = "Narrow the search with path, glob or type, or a more specific pattern.";

const input = z.object({
  pattern: z.string().min(1).describe("Regular expression to search for (Rust regex syntax, as ripgrep)"),
  path: z
    .string()
    .optional()
    .describe("File or folder to search, relative to the workspace root (default: the whole workspace)"),
  glob: z.string().optional().describe('Only search files matching this glob, e.g. "*.ts" or "src/**/*.{ts,tsx}"'),
  type: z.string().optional().describe('Only search files of this ripgrep type, e.g. "ts", "py", "go"'),
  output_mode: z
    .enum(["files_with_matches", "content", "count"])
    .default("files_with_matches")
    .describe("files_with_matches (default): paths; content: matching lines; count: matches per file"),
  "-i": z.boolean().optional().describe("Case-insensitive search"),
  "-n": z.boolean().optional().describe("Show line numbers in content mode (default true)"),
  "-A": z.number().int().min(0).max(100).optional().describe("Lines of context after each match (content mode)"),
  "-B": z.number().int().min(0).max(100).optional().describe("Lines of context before each match (content mode)"),
  "-C": z
    .number()
    .int()
    .min(0)
    .max(100)
    .optional()
    .describe("Lines of context before and after each match (content mode)"),
  multiline: z.boolean().optional().describe("Let patterns span lines; . also matches newlines"),
  head_limit: z.number().int().min(1).optional().describe("Show at most this many lines or entries"),
});
type GrepArgs = z.infer<typeof input>;

/** One search: rg's arguments and operands, and (with a glob) the files .gitignore does not hide. */
interface Search {
  args: string[];
  operands: string[];
  allowed: Set<string> | undefined;
  ctx: ToolContext;
}

export default defineTool({
  name: "Grep",
  title: "Search file contents",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input,
  async handle(a, ctx) {
    const args = [...RG_BASE];
    if (a["-i"]) args.push("--ignore-case");
    if (a.multiline) args.push("--multiline", "--multiline-dotall");
    if (a.glob) args.push("--glob", a.glob);
    if (a.type) args.push("--type", a.type);
    const target = await searchTarget(a.path, ctx);
    const allowed = a.glob ? await unignored(target, ctx) : undefined;
    const search: Search = { args, operands: ["-e", a.pattern, "--", ...target], allowed, ctx };
    if (a.output_mode === "content") return { text: await contentRows(a, search) };
    if (a.output_mode === "count") return { text: await countRows(a, search) };
    return { text: await fileRows(a, search) };
  },
});

/** files_with_matches mode: matching files, newest first (stat'ed while rg still searches). */
async function fileRows(a: GrepArgs, { args, operands, allowed, ctx }: Search): Promise<string> {
  const files = new MtimeList(ctx.ws.root);
  // --null ends each path with NUL and no newline, so each NUL-ended record is one path.
  const onPath = (file: string) => file && (!allowed || allowed.has(file)) && files.add(file);
  await runRg([...args, "--files-with-matches", "--null", ...operands], ctx, onPath, "\0");
  if (files.size === 0) return "No matches found.";
  const { sorted, note } = files.sorted();
  return `Found ${plural(sorted.length, "file")}${note}\n${fitEntries(sorted, a.head_limit, sorted.length, "files", NARROW)}`;
}

/** count mode: matching lines per file, by path, with the total. */
async function countRows(a: GrepArgs, { args, operands, allowed, ctx }: Search): Promise<string> {
  const counts = new Map<string, string>();
  await runRg([...args, "--count", "--with-filename", "--null", ...operands], ctx, (line) => {
    const [file = "", count = ""] = line.split("\0");
    if (!allowed || allowed.has(file)) counts.set(file, count);
  });
  if (counts.size === 0) return "No matches found.";
  const rows = [...counts].sort(([x], [y]) => x.localeCompare(y)).map(([f, n]) => `${f}:${n}`);
  const total = [...counts.values()].reduce((s, n) => s + Number(n), 0);
  return `${plural(total, "matching line")} in ${plural(rows.length, "file")}\n${fitEntries(rows, a.head_limit, rows.length, "files", NARROW)}`;
}

/** content mode: matching lines (with context lines and -- between groups), within the result budget. */
async function contentRows(a: GrepArgs, { args, operands, allowed, ctx }: Search): Promise<string> {
  const visible = (file: string) => !allowed || allowed.has(file);
  const context = a["-C"] ?? 0;
  const [after, before] = [a["-A"] ?? context, a["-B"] ?? context];
  if (after) args.push("--after-context", String(after));
  if (before) args.push("--before-context", String(before));
  const numbers = a["-n"] ?? true;
  const rows: string[] = [];
  let [total, shown, size, full] = [0, 0, 0, false];
  let prev: { file: string; line: number } | undefined;
  const output = new JsonLines((raw) => {
    const isMatch = raw.startsWith('{"type":"match"');
    if (!isMatch && !raw.startsWith('{"type":"context"')) return;
    const { data } = JSON.parse(raw) as { data: { path: RgText; lines: RgText; line_number: number } };
    const file = decode(data.path);
    if (!visible(file)) return;
    if (isMatch) total++;
    if (full) return;
    const text = withoutEol(decode(data.lines));
    const sep = isMatch ? ":" : "-";
    const clipped = text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}… [${text.length} chars]` : text;
    // join builds a flat copy, so the row does not keep a long line's whole text alive until the result is joined.
    const row = (numbers ? [file, sep, data.line_number, sep, clipped] : [file, sep, clipped]).join("");
    if ((a.head_limit !== undefined && rows.length >= a.head_limit) || size + row.length > OUTPUT_BUDGET) {
      full = true;
      // Without a glob every match counts, so the rest of the output is only counted, undecoded.
      if (!allowed) output.countOnly();
      return;
    }
    if ((after || before) && prev && (prev.file !== file || data.line_number > prev.line + 1)) rows.push("--");
    if (after || before) prev = { file, line: data.line_number + text.split("\n").length - 1 };
    rows.push(row);
    size += row.length + 1;
    if (isMatch) shown++;
  });
  await runRgTo([...args, "--json", ...operands], ctx, output);
  total += output.counted;
  if (total === 0) return "No matches found.";
  const note =
    total > shown ? `\n\n[${total - shown} more matching lines left out (${shown} of ${total} shown). ${NARROW}]` : "";
  return rows.join("\n") + note;
}
