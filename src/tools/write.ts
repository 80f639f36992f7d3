import { z } from "zod";
import { defineTool } from "../server/tool.js";
import { decodeText, encodeText, looksBinary, matchLineEndings, usesCRLF } from "../files/text.js";

export default defineTool({
  name: "Write",
  title: "Write file",
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  input: z.object({
    file_path: z.string().describe("Path of the file, absolute or relative to the workspace root"),
    content: z.string().describe("The complete new content of the file"),
  }),
  output: z.object({
    file_path: z.string(),
    action: z.enum(["created", "overwritten"]),
    bytes: z.number(),
    lines: z.number(),
    message: z.string(),
  }),
  async handle({ file_path, content }, { ws }) {
    const abs = await ws.resolve(file_path, "write");
    const name = ws.relative(abs);
    const { before: st, after: written } = await ws.replaceFile(abs, true, (current) => {
      if (!current) return encodeText({ text: content, encoding: "utf8", bom: false });
      ws.assertFresh(abs, current.st);
      if (looksBinary(current.data)) return encodeText({ text: content, encoding: "utf8", bom: false });
      const prev = decodeText(current.data);
      return encodeText({
        ...prev,
        text: content.includes("\r") ? content : matchLineEndings(content, usesCRLF(prev.text)),
      });
    });
    const action = st ? "overwritten" : "created";
    const lines = content === "" ? 0 : content.split("\n").length - (content.endsWith("\n") ? 1 : 0);
    const message = `${st ? "Overwrote" : "Created"} ${name} (${lines} lines, ${written.size} bytes).`;
    return { text: message, structured: { file_path: name, action, bytes: written.size, lines, message } };
  },
});
