import { readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { packageRoot } from "./paths.js";
import { readRegularText } from "./files/regular.js";

export interface Doc<M> {
  meta: M;
  body: string;
}

/** YAML front matter and body; the YAML parser is loaded on first use (start-up does without it: see loadCommands). */
export async function parseFrontMatter<M>(text: string, source: string): Promise<Doc<M>> {
  const m = /^---\r?\n([\s\S]*?)\r?\n---\r?\n?([\s\S]*)$/.exec(text);
  if (!m) throw new Error(`${source}: missing YAML front matter`);
  const { parse } = await import("./yaml.js");
  return { meta: (parse(m[1]!) ?? {}) as M, body: m[2]!.trim() };
}

export interface CommandMeta {
  description: string;
  arguments?: { name: string; description: string; required?: boolean }[];
}

export interface Command extends Doc<CommandMeta> {
  name: string;
}

const promptsDir = path.join(packageRoot, "prompts");

/** A quick command file as parsed: its text, front matter and body. */
export interface CommandFile extends Doc<CommandMeta> {
  file: string;
  text: string;
}

/** prompts/commands/*.md as parsed by scripts/build.mjs, in JSON (undefined when running from src/). */
declare const __PARSED_COMMANDS__: string | undefined;

/**
 * The quick command files, in name order, each parsed (a file whose text is the one parsed at build time reuses
 * that parse, so start-up needs no YAML parser).
 */
export async function readCommandFiles(): Promise<CommandFile[]> {
  const dir = path.join(promptsDir, "commands");
  const built = new Map(
    (typeof __PARSED_COMMANDS__ === "undefined" ? [] : (JSON.parse(__PARSED_COMMANDS__) as CommandFile[])).map((c) => [
      c.file,
      c,
    ]),
  );
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".md"))
    .sort();
  return Promise.all(
    files.map(async (file) => {
      const text = readFileSync(path.join(dir, file), "utf8");
      const known = built.get(file);
      return known?.text === text ? known : { file, text, ...(await parseFrontMatter<CommandMeta>(text, file)) };
    }),
  );
}

/** Quick commands from prompts/commands/*.md, exposed as MCP prompts named be-<file>. */
export async function loadCommands(): Promise<Command[]> {
  return (await readCommandFiles()).map(({ file, meta, body }) => ({
    name: `be-${path.basename(file, ".md")}`,
    meta,
    body,
  }));
}

export function render(template: string, args: Record<string, string | undefined>): string {
  return template.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, key: string) => args[key]?.trim() ?? "");
}

export const instructions = () => readFileSync(path.join(promptsDir, "instructions.md"), "utf8").trim();

/** An agent file's front matter (Claude Code's fields; others are ignored). Workspace files are hostile: types are checked. */
const agentMetaSchema = z.object({
  name: z.string().min(1),
  description: z.string().optional(),
  tools: z.union([z.string(), z.array(z.string())]).optional(),
  model: z.string().optional(),
});
export type AgentMeta = z.infer<typeof agentMetaSchema>;

export interface Agent {
  name: string;
  description: string;
  /** Tool names the agent may call; undefined means all. */
  tools?: string[];
  model?: string;
  systemPrompt: string;
  source: string;
}

/** Claude Code tool names in agent definitions, mapped to this server's tools. */
const TOOL_ALIASES: Record<string, string> = { Bash: "Run", MultiEdit: "Edit", LS: "Glob" };

function toAgent(doc: Doc<AgentMeta>, source: string): Agent {
  const tools = typeof doc.meta.tools === "string" ? doc.meta.tools.split(",") : doc.meta.tools;
  const model = doc.meta.model && doc.meta.model !== "inherit" ? doc.meta.model : undefined;
  return {
    name: doc.meta.name,
    description: doc.meta.description ?? "",
    tools: tools?.map((t) => TOOL_ALIASES[t.trim()] ?? t.trim()).filter(Boolean),
    model,
    systemPrompt: doc.body,
    source,
  };
}

async function agentsIn(dir: string): Promise<Agent[]> {
  const files = await fs.readdir(dir).catch(() => [] as string[]);
  const agents: Agent[] = [];
  for (const f of files.filter((f) => f.endsWith(".md")).sort()) {
    const file = path.join(dir, f);
    try {
      const text = await readRegularText(file);
      if (text === undefined) throw new Error("not a regular file");
      const doc = await parseFrontMatter<unknown>(text, file);
      if (!(doc.meta as { name?: unknown }).name) continue;
      const meta = agentMetaSchema.safeParse(doc.meta);
      if (!meta.success) throw new Error(meta.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
      agents.push(toAgent({ meta: meta.data, body: doc.body }, file));
    } catch (e) {
      process.stderr.write(`skipping agent definition ${file}: ${(e as Error).message}\n`);
    }
  }
  return agents;
}

/** Built-in agents from prompts/agents/, then the workspace's .claude/agents/ (which may override by name). */
export async function loadAgents(workspaceRoot: string): Promise<Map<string, Agent>> {
  const all = [
    ...(await agentsIn(path.join(promptsDir, "agents"))),
    ...(await agentsIn(path.join(workspaceRoot, ".claude", "agents"))),
  ];
  return new Map(all.map((a) => [a.name, a]));
}

export const roleText = () => readFileSync(path.join(promptsDir, "agents", "backend-developer.md"), "utf8");
