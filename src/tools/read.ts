import fs from "node:fs/promises";
import { z } from "zod";
import { defineTool, MAX_RESULT_CHARS } from "../server/tool.js";
import { errno } from "../files/folders.js";
import { ToolError } from "../server/errors.js";
import { decodeText, looksBinary, numberLine, splitLines } from "../files/text.js";

const DEFAULT_LIMIT = 2000;
const MAX_LINE = 2000;
const MAX_FILE_BYTES = 64 * 1024 * 1024;
const MAX_IMAGE_BYTES = 3.75 * 1024 * 1024;

/** The image type from the file's first bytes (PNG, JPEG, GIF, WebP), whatever its name says. */
function imageType(buf: Buffer): string | undefined {
  const ascii = buf.subarray(0, 12).toString("latin1");
  if (ascii.startsWith("\x89PNG\r\n\x1a\n")) return "image/png";
  if (buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return "image/jpeg";
  if (ascii.startsWith("GIF87a") || ascii.startsWith("GIF89a")) return "image/gif";
  if (ascii.startsWith("RIFF") && ascii.slice(8, 12) === "WEBP") return "image/webp";
  return undefined;
}

async function describeDirectory(abs: string, name: string): Promise<never> {
  const entries = await fs.readdir(abs, { withFileTypes: true });
  const shown = entries.slice(0, 20).map((e) => `  ${e.name}${e.isDirectory() ? "/" : ""}`);
  const more = entries.length > shown.length ? `\n  … and ${entries.length - shown.length} more` : "";
  throw new ToolError(
    `${name} is a directory, not a file. Read takes a file; use Glob to list files. It contains:\n${shown.join("\n") || "  (empty)"}${more}`,
  );
}

export default defineTool({
  name: "Read",
  title: "Read file",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.object({
    file_path: z.string().describe("Path of the file, absolute or relative to the workspace root"),
    offset: z.number().int().min(1).optional().describe("1-based line number to start reading from"),
    limit: z.number().int().min(1).optional().describe(`Number of lines to read (default ${DEFAULT_LIMIT})`),
  }),
  async handle({ file_path, offset = 1, limit = DEFAULT_LIMIT }, { ws }) {
    const abs = await ws.resolve(file_path);
    const name = ws.relative(abs);
    const st = await fs.stat(abs).catch((e) => {
      if (errno(e) === "ENOENT")
        throw new ToolError(`File not found: ${name}. Check the path, or use Glob to find the file.`);
      throw e;
    });
    if (st.isDirectory()) return describeDirectory(abs, name);
    if (!st.isFile()) throw new ToolError(`${name} is not a regular file.`);

    if (st.size > MAX_FILE_BYTES) {
      throw new ToolError(
        `${name} is ${(st.size / 1048576).toFixed(0)} MB; Read handles files up to 64 MB. Use Grep to find the lines you need.`,
      );
    }
    const buf = await fs.readFile(abs);
    ws.recordRead(abs, st);
    const mimeType = imageType(buf);
    if (mimeType) {
      if (st.size > MAX_IMAGE_BYTES)
        throw new ToolError(
          `${name} is an image of ${st.size} bytes; images up to ${MAX_IMAGE_BYTES} bytes can be read.`,
        );
      return {
        text: `Image ${name} (${mimeType}, ${st.size} bytes)`,
        images: [{ data: buf.toString("base64"), mimeType }],
      };
    }
    if (looksBinary(buf))
      throw new ToolError(`${name} is a binary file (${st.size} bytes) and cannot be shown as text.`);
    if (buf.length === 0) return { text: `${name} exists but is empty (0 bytes).` };

    const lines = splitLines(decodeText(buf).text);
    if (offset > lines.length) {
      throw new ToolError(
        `offset ${offset} is past the end of ${name}, which has ${lines.length} lines. Use an offset from 1 to ${lines.length}.`,
      );
    }
    const out: string[] = [];
    let size = 0;
    let last = offset - 1;
    const end = Math.min(lines.length, offset - 1 + limit);
    for (let i = offset - 1; i < end; i++) {
      let line = lines[i]!;
      if (line.length > MAX_LINE) line = `${line.slice(0, MAX_LINE)}… [line cut: ${line.length} characters]`;
      const numbered = numberLine(i + 1, line);
      if (size + numbered.length + 200 > MAX_RESULT_CHARS) break;
      out.push(numbered);
      size += numbered.length + 1;
      last = i + 1;
    }
    if (last < lines.length) {
      const why = last < end ? "to stay within the result size limit" : `(limit ${limit})`;
      out.push(`\n[Showing lines ${offset}-${last} of ${lines.length} ${why}. Continue with offset=${last + 1}.]`);
    }
    return { text: out.join("\n") };
  },
});
