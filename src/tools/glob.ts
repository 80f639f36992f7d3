import { z } from "zod";
import { defineTool } from "../tool.js";
import { fitEntries, RG_BASE, runRg, searchTarget, sortByMtime } from "./grep.js";

const DEFAULT_LIMIT = 1000;

export default defineTool({
  name: "Glob",
  title: "Find files by name",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.object({
    pattern: z.string().min(1).describe('Glob to match file paths against, e.g. "**/*.ts" or "src/**/route*.ts"'),
    path: z.string().optional().describe("Folder to search in, relative to the workspace root (default: the whole workspace)"),
  }),
  async handle({ pattern, path }, ctx) {
    const target = await searchTarget(path, ctx);
    const files: string[] = [];
    await runRg([...RG_BASE, "--files", "--glob", pattern, "--", ...target], ctx, (line) => files.push(line));
    if (files.length === 0) return { text: `No files match ${pattern}${path ? ` in ${path}` : ""}.` };
    const sorted = await sortByMtime(files, ctx.ws.root);
    return { text: fitEntries(sorted, DEFAULT_LIMIT, files.length, "files", "Use a more specific pattern or path.") };
  },
});
