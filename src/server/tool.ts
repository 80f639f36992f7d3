import { readFileSync } from "node:fs";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { packageRoot } from "../paths.js";
import type { Workspace } from "../files/workspace.js";
import { Interrupt, ToolError } from "./errors.js";

/** The one size rule: no tool result may be longer than this (Claude Code refuses results over ~25k tokens). */
export const MAX_RESULT_CHARS = 80_000;

export interface ToolContext {
  ws: Workspace;
  signal: AbortSignal;
  /** Reports liveness to the caller (MCP progress notifications, or the agent's progress). */
  progress(message: string): void;
  /** The MCP connection, for requests to the client (sampling); absent inside the sub-agent. */
  server?: Server;
  /** Asks the user a question (MCP elicitation); undefined when there is no way to ask. */
  ask?(question: string, options?: string[]): Promise<string | undefined>;
}

export interface ToolOutput {
  text: string;
  structured?: Record<string, unknown>;
  images?: { data: string; mimeType: string }[];
}

export interface Tool<I extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  input: I;
  output?: z.ZodObject;
  annotations: ToolAnnotations;
  handle(args: z.infer<I>, ctx: ToolContext): Promise<ToolOutput>;
}

/** Defines a tool; its model-facing description comes from tools/<name>.md. */
export function defineTool<I extends z.ZodObject>(def: Omit<Tool<I>, "description">): Tool {
  const description = readFileSync(`${packageRoot}/tools/${def.name}.md`, "utf8").trim();
  return { ...def, description } as unknown as Tool;
}

type JsonSchema = { type: "object"; [k: string]: unknown };
const schemaCache = new WeakMap<Tool, { input: JsonSchema; output?: JsonSchema }>();

/** A tool's JSON Schemas, converted once and shared by tools/list and the sub-agent's tool definitions. */
export function jsonSchemas(t: Tool): { input: JsonSchema; output?: JsonSchema } {
  let s = schemaCache.get(t);
  if (!s) {
    s = {
      input: z.toJSONSchema(t.input, { io: "input" }) as JsonSchema,
      ...(t.output && { output: z.toJSONSchema(t.output) as JsonSchema }),
    };
    schemaCache.set(t, s);
  }
  return s;
}

export interface CallResult {
  [key: string]: unknown;
  content: ({ type: "text"; text: string } | { type: "image"; data: string; mimeType: string })[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

export function errorResult(message: string): CallResult {
  return { content: [{ type: "text", text: capText(message) }], isError: true };
}

export function capText(text: string, max = MAX_RESULT_CHARS): string {
  if (text.length <= max) return text;
  const marker = `\n\n[… ${text.length - max} characters left out to fit the result limit …]\n\n`;
  const keep = max - marker.length;
  return text.slice(0, Math.ceil(keep * 0.7)) + marker + text.slice(text.length - Math.floor(keep * 0.3));
}

/** Cuts a structured result's longest strings, then its longest lists, until its JSON fits the result limit. */
export function fitStructured<T>(value: T): T {
  const cut = (v: unknown, maxString: number, maxItems: number): unknown => {
    if (typeof v === "string")
      return v.length > maxString ? `${v.slice(0, maxString)}… [${v.length - maxString} characters cut]` : v;
    if (Array.isArray(v)) return v.slice(0, maxItems).map((x) => cut(x, maxString, maxItems));
    if (v && typeof v === "object")
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cut(x, maxString, maxItems)]));
    return v;
  };
  let fitted: unknown = value;
  for (
    let maxString = MAX_RESULT_CHARS, maxItems = 10_000;
    JSON.stringify(fitted).length > MAX_RESULT_CHARS && maxString > 50;
  ) {
    maxString = Math.floor(maxString / 2);
    if (maxString < 2_000) maxItems = Math.max(1, Math.floor(maxItems / 4));
    fitted = cut(value, maxString, maxItems);
  }
  return fitted as T;
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const where = i.path.length ? `"${i.path.join(".")}"` : "arguments";
      return `- ${where}: ${i.message}`;
    })
    .join("\n");
}

/** Validates, runs and renders one tool call; every failure becomes a readable isError result. */
export async function callTool(tool: Tool, rawArgs: unknown, ctx: ToolContext): Promise<CallResult> {
  const parsed = tool.input.safeParse(rawArgs ?? {});
  if (!parsed.success) {
    return errorResult(
      `Invalid arguments for ${tool.name}:\n${formatIssues(parsed.error)}\nFix the arguments and call ${tool.name} again.`,
    );
  }
  try {
    const out = await tool.handle(parsed.data, ctx);
    const content: CallResult["content"] = [{ type: "text", text: capText(out.text) }];
    for (const img of out.images ?? []) content.push({ type: "image", ...img });
    return out.structured ? { content, structuredContent: fitStructured(out.structured) } : { content };
  } catch (e) {
    if (e instanceof Interrupt) throw e;
    if (e instanceof ToolError) return errorResult(e.message);
    const code = (e as NodeJS.ErrnoException).code;
    return errorResult(`${tool.name} failed: ${(e as Error).message ?? String(e)}${code ? ` (${code})` : ""}`);
  }
}
