import type Anthropic from "@anthropic-ai/sdk";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { CreateMessageResultWithTools, SamplingMessage } from "@modelcontextprotocol/sdk/types.js";
import prices from "./prices.json" with { type: "json" };
import { ToolError } from "./workspace.js";
import type { Usage } from "./records.js";

export type Message = Anthropic.MessageParam;
export type Block = Anthropic.ContentBlockParam;

export interface ToolSpec {
  name: string;
  description: string;
  input_schema: { type: "object"; [k: string]: unknown };
}

export interface ModelRequest {
  system: string;
  tools: ToolSpec[];
  messages: Message[];
  maxTokens: number;
}

export type { Usage } from "./records.js";

export interface ModelReply {
  content: Block[];
  stopReason: string;
  usage: Usage;
  model: string;
}

export interface ModelBackend {
  kind: "anthropic" | "sampling";
  model: string;
  call(req: ModelRequest, signal: AbortSignal): Promise<ModelReply>;
}

export const DEFAULT_MODEL = "claude-sonnet-5-5";
export const emptyUsage = (): Usage => ({ input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });

type Price = typeof prices.fallback;

/** Estimated cost in USD from the price table in prices.json (dated snapshot suffixes are ignored). */
export function costUsd(model: string, u: Usage): number {
  const p = (prices.models as Record<string, Price>)[model.replace(/-\d{8}$/, "")] ?? prices.fallback;
  return (u.input_tokens * p.input + u.output_tokens * p.output + u.cache_creation_input_tokens * p.cache_write + u.cache_read_input_tokens * p.cache_read) / 1e6;
}

export const addUsage = (a: Usage, b: Usage): Usage => ({
  input_tokens: a.input_tokens + b.input_tokens,
  output_tokens: a.output_tokens + b.output_tokens,
  cache_read_input_tokens: a.cache_read_input_tokens + b.cache_read_input_tokens,
  cache_creation_input_tokens: a.cache_creation_input_tokens + b.cache_creation_input_tokens,
});

const CACHE = { type: "ephemeral" } as const;

/** Cache breakpoints on the system prompt, the tool list and the newest message, so each turn re-reads the rest from cache. */
export function withCacheBreakpoints(req: ModelRequest): Pick<Anthropic.MessageCreateParamsNonStreaming, "system" | "tools" | "messages"> {
  const tools = req.tools.map((t, i) => (i === req.tools.length - 1 ? { ...t, cache_control: CACHE } : t));
  const messages = req.messages.map((m, i) => {
    if (i !== req.messages.length - 1) return m;
    const blocks: Block[] = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content;
    return { ...m, content: blocks.map((b, j) => (j === blocks.length - 1 ? ({ ...b, cache_control: CACHE } as Block) : b)) } as Message;
  });
  return { system: [{ type: "text", text: req.system, cache_control: CACHE }], tools, messages };
}

export async function anthropicBackend(model: string, apiKey: string): Promise<ModelBackend> {
  const { default: AnthropicClient, APIError } = await import("@anthropic-ai/sdk");
  const client = new AnthropicClient({ apiKey, maxRetries: Number(process.env.BACKEND_AGENT_MAX_RETRIES ?? 4) });
  return {
    kind: "anthropic",
    model,
    async call(req, signal) {
      try {
        const res = await client.messages.create({ model, max_tokens: req.maxTokens, ...withCacheBreakpoints(req) }, { signal });
        const u = res.usage;
        return {
          content: res.content as Block[],
          stopReason: res.stop_reason ?? "end_turn",
          model: res.model,
          usage: { input_tokens: u.input_tokens, output_tokens: u.output_tokens, cache_read_input_tokens: u.cache_read_input_tokens ?? 0, cache_creation_input_tokens: u.cache_creation_input_tokens ?? 0 },
        };
      } catch (e) {
        if (e instanceof APIError) throw new ToolError(`The Anthropic API failed after retries: ${e.status ?? ""} ${e.message}`.trim());
        throw e;
      }
    },
  };
}

type SamplingBlock = SamplingMessage["content"] extends infer C ? (C extends (infer B)[] ? B : C) : never;

function toSampling(block: Block): SamplingBlock | undefined {
  switch (block.type) {
    case "text":
      return { type: "text", text: block.text };
    case "tool_use":
      return { type: "tool_use", id: block.id, name: block.name, input: block.input as Record<string, unknown> };
    case "tool_result": {
      const content = typeof block.content === "string" ? [{ type: "text" as const, text: block.content }] : (block.content ?? []).flatMap((c) => (c.type === "text" ? [{ type: "text" as const, text: c.text }] : []));
      return { type: "tool_result", toolUseId: block.tool_use_id, content, isError: block.is_error };
    }
    default:
      return undefined;
  }
}

function fromSampling(block: CreateMessageResultWithTools["content"] extends infer C ? (C extends (infer B)[] ? B : C) : never): Block | undefined {
  if (block.type === "text") return { type: "text", text: block.text };
  if (block.type === "tool_use") return { type: "tool_use", id: block.id, name: block.name, input: block.input };
  return undefined;
}

export const SAMPLING_MODEL = "client model (MCP sampling)";

/** The client's own model through MCP sampling (sampling/createMessage with tools). */
export function samplingBackend(server: Server): ModelBackend {
  return {
    kind: "sampling",
    model: SAMPLING_MODEL,
    async call(req, signal) {
      const messages: SamplingMessage[] = req.messages.map((m) => {
        const blocks = typeof m.content === "string" ? [{ type: "text" as const, text: m.content }] : m.content;
        return { role: m.role, content: blocks.map(toSampling).filter((b) => b !== undefined) } as SamplingMessage;
      });
      const res = (await server.createMessage(
        { systemPrompt: req.system, messages, maxTokens: req.maxTokens, tools: req.tools.map((t) => ({ name: t.name, description: t.description, inputSchema: t.input_schema })), toolChoice: { mode: "auto" } },
        { signal, timeout: 10 * 60_000 },
      )) as CreateMessageResultWithTools;
      const content = (Array.isArray(res.content) ? res.content : [res.content]).map(fromSampling).filter((b) => b !== undefined);
      const stop = res.stopReason === "toolUse" ? "tool_use" : res.stopReason === "maxTokens" ? "max_tokens" : "end_turn";
      return { content, stopReason: stop, usage: emptyUsage(), model: res.model };
    },
  };
}

/** Picks the model backend: the Anthropic API when a key is set, else the client's sampling, else a clear error. */
export async function chooseBackend(model: string, server: Server | undefined, resuming = false): Promise<ModelBackend> {
  const sampling = server?.getClientCapabilities()?.sampling;
  if (resuming && model === SAMPLING_MODEL && sampling?.tools) return samplingBackend(server!);
  const key = process.env.ANTHROPIC_API_KEY;
  if (key) return anthropicBackend(model === SAMPLING_MODEL ? DEFAULT_MODEL : model, key);
  if (sampling?.tools) return samplingBackend(server!);
  const why = sampling ? "The client offers MCP sampling, but without tool use, which the agent needs." : "The client does not offer MCP sampling.";
  throw new ToolError(`Task needs a model. Set ANTHROPIC_API_KEY in the server's environment (and ANTHROPIC_BASE_URL for a proxy), or use a client that supports MCP sampling with tools. ${why}`);
}
