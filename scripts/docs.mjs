// Regenerates the tool and prompt reference in README.md from the built server's own schemas.
// `node scripts/docs.mjs --check` exits 1 when the README is out of date.
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { askServer } from "./ask-server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const readme = path.join(root, "README.md");
const START = "<!-- generated:tools -->";
const END = "<!-- /generated:tools -->";

function params(schema) {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([name, p]) => {
    const type = p.enum ? p.enum.map((v) => `"${v}"`).join(" \\| ") : (p.type ?? "any");
    const dflt = p.default !== undefined ? ` (default \`${JSON.stringify(p.default)}\`)` : "";
    return `  - \`${name}\` ${type}${required.has(name) ? ", required" : ""}${dflt}: ${p.description ?? ""}`;
  });
}

export async function generate() {
  const { tools, prompts } = await askServer(path.join(root, "dist", "cli.js"), async (client) => ({
    tools: (await client.listTools()).tools,
    prompts: (await client.listPrompts()).prompts,
  }));
  const toolDocs = tools.map((t) => {
    const a = t.annotations ?? {};
    const hints = [
      a.readOnlyHint && "read-only",
      a.destructiveHint && "destructive",
      t.outputSchema && "structured output",
    ]
      .filter(Boolean)
      .join(", ");
    return `#### ${t.name}: ${t.title}\n_${hints}_\n\n${t.description.split("\n")[0]}\n\n${params(t.inputSchema).join("\n")}`;
  });
  const promptDocs = prompts.map(
    (p) =>
      `- \`${p.name}\`${(p.arguments ?? []).map((a) => ` \`${a.name}${a.required ? "" : "?"}\``).join("")}: ${p.description ?? ""}`,
  );
  return `${START}\n### Tools\n\n${toolDocs.join("\n\n")}\n\n### Prompts\n\n${promptDocs.join("\n")}\n${END}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = await fs.readFile(readme, "utf8");
  const [before, rest] = text.split(START);
  const after = rest?.split(END)[1];
  if (after === undefined) throw new Error(`README.md lacks the ${START} … ${END} markers`);
  const updated = `${before}${await generate()}${after}`;
  if (process.argv.includes("--check")) {
    if (updated !== text) {
      console.error("README.md tool docs are out of date: run npm run docs");
      process.exit(1);
    }
  } else await fs.writeFile(readme, updated);
}
