import { z } from "zod";
import { defineTool } from "../server/tool.js";
import { fitEntries, plural, RG_BASE, runRg, searchTarget, sortByMtime, unignored } from "../files/search.js";

const DEFAULT_LIMIT = 1000;

/** rg anchors a glob containing a slash to the workspace root; anchor it to the searched folder instead. */
function anchorTo(dir: string | undefined, pattern: string): string {
  const neg = pattern.startsWith("!") ? "!" : "";
  const body = pattern.slice(neg.length);
  if (!dir || !body.replace(/\/$/, "").includes("/")) return pattern;
  return `${neg}${dir.replace(/[*?[\]{}\\!]/g, "\\$&")}/${body.replace(/^\//, "")}`;
}

export default defineTool({
  name: "Glob",
  title: "Find files by name",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.object({
    pattern: z.string().min(1).describe('Glob to match file paths against, e.g. "**/*.ts" or "src/**/route*.ts"'),
    path: z
      .string()
      .optional()
      .describe("Folder to search in, relative to the workspace root (default: the whole workspace)"),
  }),
  async handle({ pattern, path }, ctx) {
    const target = await searchTarget(path, ctx);
    const matched: string[] = [];
    const [allowed] = await Promise.all([
      unignored(target, ctx),
      runRg(
        [...RG_BASE, "--files", "--glob", anchorTo(target[0], pattern.replace(/^\.\//, "")), "--", ...target],
        ctx,
        (line) => matched.push(line),
      ),
    ]);
    const files = matched.filter((f) => allowed.has(f));
    if (files.length === 0) return { text: `No files match ${pattern}${path ? ` in ${path}` : ""}.` };
    const { sorted, note } = sortByMtime(files, ctx.ws.root);
    return {
      text: `${note ? `${plural(files.length, "file")}${note}\n` : ""}${fitEntries(sorted, DEFAULT_LIMIT, files.length, "files", "Use a more specific pattern or path.")}`,
    };
  },
});
