import { distance } from "fastest-levenshtein";
import { z } from "zod";
import { defineTool } from "../server/tool.js";
import { ToolError } from "../server/errors.js";
import { decodeText, encodeText, looksBinary, matchLineEndings, usesCRLF, type TextFile } from "../files/text.js";
import { numberLine, splitLines } from "../files/text.js";

const CONTEXT_LINES = 3;

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < index; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

function occurrences(text: string, needle: string): number[] {
  const found: number[] = [];
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + needle.length)) found.push(i);
  return found;
}

/** The whole lines of text that hold [from, to), with CONTEXT_LINES more on each side, and the number of the first. */
function around(text: string, from: number, to: number): { line: number; text: string } {
  let start = text.lastIndexOf("\n", from - 1) + 1;
  for (let i = 0; i < CONTEXT_LINES && start > 0; i++) start = text.lastIndexOf("\n", start - 2) + 1;
  let end = text.indexOf("\n", Math.max(from, to - 1));
  end = end === -1 ? text.length : end + 1;
  for (let i = 0; i < CONTEXT_LINES && end < text.length; i++) {
    const next = text.indexOf("\n", end);
    end = next === -1 ? text.length : next + 1;
  }
  return { line: lineOf(text, start), text: text.slice(start, end) };
}

/** The file lines most like the first line of old_string, to show where the model's memory went wrong. */
function nearestLines(lines: string[], oldString: string): string {
  const probe = oldString
    .split(/\r?\n/)
    .find((l) => l.trim())
    ?.trim()
    .slice(0, 200);
  if (!probe) return "";
  const scored = lines
    .slice(0, 50_000)
    .map((line, i) => ({ i, score: distance(probe, line.trim().slice(0, 200)) / Math.max(probe.length, 1) }))
    .filter((s) => s.score < 0.5)
    .sort((a, b) => a.score - b.score)
    .slice(0, 3);
  if (!scored.length) return "";
  return `\nThe most similar lines in the file:\n${scored.map((s) => numberLine(s.i + 1, lines[s.i]!)).join("\n")}`;
}

interface EditPlan {
  file: TextFile;
  from: string;
  to: string;
  found: number[];
  updated: string;
}

/** Where old_string occurs and the text after the replacement; throws when it is absent or not unique. */
function planEdit(file: TextFile, name: string, oldString: string, newString: string, replaceAll: boolean): EditPlan {
  const crlf = usesCRLF(file.text);
  const [from, to] = [oldString, newString].map((s) => (s.includes("\r") ? s : matchLineEndings(s, crlf))) as [
    string,
    string,
  ];
  const found = occurrences(file.text, from);
  if (found.length === 0) {
    throw new ToolError(
      `old_string was not found in ${name}. It must match the file exactly, including whitespace and indentation; Read the file again if unsure.${nearestLines(splitLines(file.text), oldString)}`,
    );
  }
  if (found.length > 1 && !replaceAll) {
    const at = found.slice(0, 20).map((i) => lineOf(file.text, i));
    throw new ToolError(
      `old_string occurs ${found.length} times in ${name} (lines ${at.join(", ")}${found.length > at.length ? ", …" : ""}). Add surrounding lines to make it unique, or set replace_all to true.`,
    );
  }
  const updated = replaceAll
    ? file.text.split(from).join(to)
    : file.text.slice(0, found[0]) + to + file.text.slice(found[0]! + from.length);
  return { file, from, to, found, updated };
}

export default defineTool({
  name: "Edit",
  title: "Edit file",
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  input: z.object({
    file_path: z.string().describe("Path of the file, absolute or relative to the workspace root"),
    old_string: z.string().describe("The exact text to replace"),
    new_string: z.string().describe("The text to replace it with (must differ from old_string)"),
    replace_all: z.boolean().default(false).describe("Replace every occurrence of old_string (default false)"),
  }),
  output: z.object({
    file_path: z.string(),
    replacements: z.number(),
    snippet: z.string().describe("The edited region with line numbers"),
    diff: z.string().describe("Unified diff of the change"),
  }),
  async handle({ file_path, old_string, new_string, replace_all }, { ws }) {
    if (old_string === new_string)
      throw new ToolError(
        "old_string and new_string are identical, so there is nothing to change. Give a different new_string.",
      );
    if (old_string === "")
      throw new ToolError("old_string is empty. To create a file use Write; to edit, give the exact text to replace.");
    const abs = await ws.resolve(file_path, "write");
    const name = ws.relative(abs);
    let plan: EditPlan | undefined;
    await ws.replaceFile(abs, false, (current) => {
      if (!current) throw new ToolError(`File not found: ${name}. Use Write to create a new file.`);
      ws.assertFresh(abs, current.st);
      if (looksBinary(current.data)) throw new ToolError(`${name} is a binary file; Edit works on text files.`);
      plan = planEdit(decodeText(current.data), name, old_string, new_string, replace_all);
      return encodeText({ ...plan.file, text: plan.updated });
    });
    const { file, from, to, found, updated } = plan!;

    // Only the region around the change is numbered and diffed, so the cost does not grow with the file.
    const first = found[0]!;
    const oldEnd = found.at(-1)! + from.length;
    const newEnd = oldEnd + (replace_all ? found.length : 1) * (to.length - from.length);
    const shown = around(updated, first, newEnd);
    const snippet = splitLines(shown.text)
      .map((l, i) => numberLine(shown.line + i, l))
      .join("\n");
    const before = around(file.text, first, oldEnd);
    const { structuredPatch, formatPatch } = await import("diff");
    const patch = structuredPatch(
      `a/${name}`,
      `b/${name}`,
      before.text.replaceAll("\r\n", "\n"),
      shown.text.replaceAll("\r\n", "\n"),
      undefined,
      undefined,
      { context: CONTEXT_LINES },
    );
    for (const h of patch.hunks) [h.oldStart, h.newStart] = [h.oldStart + before.line - 1, h.newStart + shown.line - 1];
    const diff = formatPatch(patch);
    const count = replace_all ? found.length : 1;
    return {
      text: `Edited ${name}: ${count} replacement${count === 1 ? "" : "s"}. The edited region:\n${snippet}`,
      structured: { file_path: name, replacements: count, snippet, diff },
    };
  },
});
