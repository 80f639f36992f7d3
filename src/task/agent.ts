import type Anthropic from "@anthropic-ai/sdk";
import { jsonSchemas, type Tool, type ToolContext } from "../server/tool.js";
import { AgentLoop } from "./agent-loop.js";
import { compactConversation } from "./context.js";
import type { ChildRun } from "./delegation.js";
import type { Block, Message, ModelBackend, ToolSpec, Usage } from "./model.js";
import { modelOptions } from "./model-options.js";
import type { AgentStatus } from "./records.js";
import type { Verification } from "./verify/index.js";

export type { AgentStatus } from "./records.js";

export interface Budget {
  maxTurns: number;
  maxTokens: number;
  maxCostUsd?: number;
  deadline: number;
}

export interface AgentOptions {
  backend: ModelBackend;
  system: string;
  tools: Tool[];
  ctx: ToolContext;
  /** The conversation so far, ending with the user's newest message. */
  messages: Message[];
  budget: Budget;
  /** Usage already spent by earlier legs of a resumed run. */
  spent: { usage: Usage; modelCalls: number; turns: number };
  fixRounds: number;
  /** Whether the agent's definition allows the web tools (WebSearch/WebFetch listed, or no tools list); default true. */
  web?: boolean;
  verify: () => Promise<Verification>;
  record: (event: Record<string, unknown>) => void;
  /** Called after every change to the conversation, to persist it for resume. */
  saveMessages: (messages: Message[]) => Promise<void>;
  onTurn: (state: { turn: number; activity: string; usage: Usage; costUsd: number; modelCalls: number }) => void;
}

export interface AgentOutcome {
  status: AgentStatus;
  summary: string;
  verification?: Verification;
  usage: Usage;
  costUsd: number;
  modelCalls: number;
  turns: number;
  fixRounds: number;
  question?: { question: string; options?: string[] };
  error?: string;
  /** Notes for the report (how thinking and web access were set up, context shrinking). */
  notes: string[];
  /** Work handed to partner agents with Task (delegation). */
  children: ChildRun[];
}

/** Bounds zod gives every integer, which say nothing: left out of what the model is sent. */
const NO_BOUND = new Set([Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]);

/** Keywords holding a subschema, a list of them, or a map of names to them. */
const SUB = new Set(["items", "additionalProperties", "not", "contains", "propertyNames"]);
const SUB_LIST = new Set(["anyOf", "oneOf", "allOf", "prefixItems"]);
const SUB_MAP = new Set(["properties", "patternProperties", "$defs", "definitions"]);

/** A JSON schema without what costs the model tokens and tells it nothing: $schema and the safe-integer bounds. */
function lean(schema: unknown): unknown {
  if (!schema || typeof schema !== "object" || Array.isArray(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === "$schema" || ((k === "minimum" || k === "maximum") && NO_BOUND.has(v as number))) continue;
    if (SUB.has(k)) out[k] = lean(v);
    else if (SUB_LIST.has(k) && Array.isArray(v)) out[k] = v.map(lean);
    else if (SUB_MAP.has(k) && v && typeof v === "object")
      out[k] = Object.fromEntries(Object.entries(v).map(([name, sub]) => [name, lean(sub)]));
    else out[k] = v;
  }
  return out;
}

export const toolSpec = (t: Tool): ToolSpec => ({
  name: t.name,
  description: t.description,
  input_schema: lean(jsonSchemas(t).input) as ToolSpec["input_schema"],
});

/** Kept for callers that clear old tool results by size; the agent itself sizes by the model's context window. */
export { compactConversation };
export { freshTokens } from "./pricing.js";

/** What the system prompt says about web access, so the agent knows whether it can look things up. */
export function webNote(backend: ModelBackend, maxUses: number): string {
  if (backend.serverTools.length) {
    return `\n\n## Web access\nYou have the API's web_search and web_fetch tools (at most ${maxUses} uses in this run; each search is billed). Use them for what the workspace cannot tell you: current library documentation, changelogs, error messages, advisories. Never put secrets or workspace code in a query; cite the pages you relied on in your summary.`;
  }
  const why =
    backend.kind === "sampling"
      ? "the model is reached through the client's MCP sampling, which offers no server-side tools"
      : backend.provider !== "anthropic"
        ? `the ${backend.provider} endpoint is used`
        : "the server runs with --web off";
  return `\n\n## Web access\nNo web search or fetch in this run (${why}). Work from the workspace and what you know; say in your summary where current documentation would have helped.`;
}

/** The sub-agent loop: model turn, tool calls, repeat; then the server verifies and sends failures back for fix rounds. */
export function runAgent(o: AgentOptions): Promise<AgentOutcome> {
  return new AgentLoop(o, o.tools.map(toolSpec), webNote(o.backend, modelOptions().webMaxUses)).run();
}

/** Continues a saved conversation with a new user message, closing tool calls that never got results. */
export function continueConversation(saved: Message[], prompt: string): Message[] {
  const messages = [...saved];
  const lastAssistant = messages.findLastIndex((m) => m.role === "assistant");
  const blocks = (m: Message | undefined): Block[] =>
    !m ? [] : typeof m.content === "string" ? [{ type: "text", text: m.content }] : (m.content as Block[]);
  const answered = new Set(
    blocks(messages[lastAssistant + 1]).flatMap((b) => (b.type === "tool_result" ? [b.tool_use_id] : [])),
  );
  const pending = blocks(messages[lastAssistant]).filter(
    (b): b is Anthropic.ToolUseBlockParam => b.type === "tool_use" && !answered.has(b.id),
  );
  const results: Block[] = pending.map((call) => ({
    type: "tool_result",
    tool_use_id: call.id,
    content:
      call.name === "AskUserQuestion"
        ? `The user answered: ${prompt}`
        : "This call was interrupted before it ran; run it again if it is still needed.",
  }));
  const text: Block = { type: "text", text: prompt };
  if (messages.at(-1)?.role === "user")
    messages[messages.length - 1] = { role: "user", content: [...blocks(messages.at(-1)), ...results, text] };
  else messages.push({ role: "user", content: [...results, text] });
  return messages;
}
