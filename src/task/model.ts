import type Anthropic from "@anthropic-ai/sdk";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { CreateMessageResultWithTools, SamplingMessage } from "@modelcontextprotocol/sdk/types.js";
import { explainApiError, type ApiErrorLike } from "./api-errors.js";
import prices from "./prices.json" with { type: "json" };
import { ToolError } from "../server/errors.js";
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
  /** Server-side web tool uses the run may still make; 0 leaves the web tools out. */
  webUsesLeft?: number;
  /** Called while the answer streams in, with a short note of how much the model has written. */
  onProgress?: (note: string) => void;
}

export type { Usage } from "./records.js";

export interface ModelReply {
  content: Block[];
  stopReason: string;
  usage: Usage;
  model: string;
  /** Why the model refused, when stopReason is "refusal" and the API says. */
  refusal?: { category: string | null; explanation: string | null };
}

export type Provider = "anthropic" | "bedrock" | "vertex";

export interface ModelBackend {
  kind: "anthropic" | "sampling";
  /** Where an "anthropic" backend sends its requests. */
  provider?: Provider;
  model: string;
  /** Server-side tools this backend offers the model (web_search, web_fetch). */
  serverTools: string[];
  /** Notes for the report on how the backend was set up (e.g. thinking could not be turned off). */
  notes: string[];
  call(req: ModelRequest, signal: AbortSignal): Promise<ModelReply>;
}

export const DEFAULT_MODEL = "claude-sonnet-5-5";
export const MODEL_ALIASES: Record<string, string> = {
  sonnet: "claude-sonnet-5-5",
  opus: "claude-opus-5-5",
  haiku: "claude-haiku-5-5",
};
/** An alias (sonnet, opus, haiku) as its model id; any other name as it is. */
export const resolveModel = (name: string) => MODEL_ALIASES[name] ?? name;

export const emptyUsage = (): Usage => ({
  input_tokens: 0,
  output_tokens: 0,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
  thinking_tokens: 0,
  web_search_requests: 0,
  web_fetch_requests: 0,
});

type Price = typeof prices.fallback;
export type ThinkingMode = "always" | "between_tools" | "adaptive" | "budget";
export interface ModelLimits {
  /** Context window in tokens. */
  context: number;
  max_output: number;
  thinking: ThinkingMode;
}

/** The table key of a model id: without a dated snapshot suffix, a Bedrock prefix or a Vertex version. */
const baseModel = (model: string) =>
  model
    .replace(/^(?:[a-z]{2,6}\.)?anthropic\./, "")
    .replace(/(?:-v\d+(?::\d+)?)$/, "")
    .replace(/[-@]\d{8}$/, "");

/** Context window, output limit and thinking mode of a model, from prices.json (fallback for unknown models). */
export function modelLimits(model: string): ModelLimits {
  return ((prices.limits as Record<string, ModelLimits>)[baseModel(model)] ?? prices.fallback_limits) as ModelLimits;
}

/** Estimated cost in USD from the price table in prices.json, with web searches at their per-use price. */
export function costUsd(model: string, u: Usage): number {
  const p = (prices.models as Record<string, Price>)[baseModel(model)] ?? prices.fallback;
  const tokens =
    (u.input_tokens * p.input +
      u.output_tokens * p.output +
      u.cache_creation_input_tokens * p.cache_write +
      u.cache_read_input_tokens * p.cache_read) /
    1e6;
  return (
    tokens +
    (u.web_search_requests ?? 0) * prices.server_tools.web_search_per_use +
    (u.web_fetch_requests ?? 0) * prices.server_tools.web_fetch_per_use
  );
}

/** Sums two usages; records written before a field existed count it as 0. */
export function addUsage(a: Usage, b: Usage): Usage {
  const sum = emptyUsage();
  for (const k of Object.keys(sum) as (keyof Usage)[]) sum[k] = (a[k] ?? 0) + (b[k] ?? 0);
  return sum;
}

export type Effort = "low" | "medium" | "high" | "xhigh" | "max";
export type ThinkingSetting = "off" | "on" | Effort;
export const THINKING_SETTINGS: ThinkingSetting[] = ["off", "on", "low", "medium", "high", "xhigh", "max"];

export interface ModelOptions {
  thinking: ThinkingSetting;
  /** Offer the API's server-side web search (and fetch) tools. */
  web: boolean;
  /** Domains the web tools may reach; empty: any. */
  webDomains: string[];
  /** Web tool uses one run may make. */
  webMaxUses: number;
}

let options: ModelOptions = { thinking: "on", web: true, webDomains: [], webMaxUses: 20 };
/** Sets how backends created from now on think and use the web (from the command line). */
export function setModelOptions(o: Partial<ModelOptions>): void {
  options = { ...options, ...o };
}
export const modelOptions = (): Readonly<ModelOptions> => options;

const BUDGETS: Record<Effort, number> = { low: 4_000, medium: 8_000, high: 16_000, xhigh: 24_000, max: 31_000 };

/** The thinking and effort parameters for a model and setting; a note when the setting cannot be honoured. */
export function thinkingParams(
  limits: ModelLimits,
  setting: ThinkingSetting,
  maxTokens: number,
): { params: Partial<Anthropic.MessageStreamParams>; note?: string } {
  const effort = setting === "off" || setting === "on" ? undefined : setting;
  if (limits.thinking === "budget") {
    if (setting === "off") return { params: { thinking: { type: "disabled" } } };
    return {
      params: { thinking: { type: "enabled", budget_tokens: Math.min(BUDGETS[effort ?? "high"], maxTokens - 1_000) } },
    };
  }
  const withEffort = effort ? { output_config: { effort } } : {};
  if (setting !== "off") return { params: { thinking: { type: "adaptive" }, ...withEffort } };
  if (limits.thinking === "adaptive") return { params: { thinking: { type: "disabled" } } };
  if (limits.thinking === "between_tools")
    return {
      params: { thinking: { type: "between_tools" } },
      note: "This model cannot turn thinking off; it thinks only between tool calls (--thinking off).",
    };
  return {
    params: { output_config: { effort: "low" } },
    note: "This model always thinks; --thinking off ran it at low effort instead.",
  };
}

const CACHE = { type: "ephemeral" } as const;
const THINKING = new Set(["thinking", "redacted_thinking"]);

/**
 * Cache breakpoints on the system prompt, the tool list and the newest user message, so each turn re-reads the rest
 * from cache. Thinking blocks are never touched: they go back exactly as received.
 */
export function withCacheBreakpoints(
  req: ModelRequest,
): Pick<Anthropic.MessageCreateParamsNonStreaming, "system" | "tools" | "messages"> {
  const tools = req.tools.map((t, i) => (i === req.tools.length - 1 ? { ...t, cache_control: CACHE } : t));
  const target = req.messages.findLastIndex((m) => m.role === "user");
  const messages = req.messages.map((m, i) => {
    if (i !== target) return m;
    const blocks: Block[] = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content;
    const at = blocks.findLastIndex((b) => !THINKING.has(b.type));
    return {
      ...m,
      content: blocks.map((b, j) => (j === at ? ({ ...b, cache_control: CACHE } as Block) : b)),
    } as Message;
  });
  return { system: [{ type: "text", text: req.system, cache_control: CACHE }], tools, messages };
}

/**
 * The API's web search and web fetch tools, capped at the uses left in the run and at the allowed domains. Models
 * from before adaptive thinking get the first versions of the tools; newer ones the versions that filter results.
 */
function webTools(usesLeft: number, limits: ModelLimits): Anthropic.ToolUnion[] {
  if (!options.web || usesLeft <= 0) return [];
  const domains = options.webDomains.length ? { allowed_domains: options.webDomains } : {};
  const uses = { max_uses: usesLeft, ...domains };
  if (limits.thinking === "budget")
    return [
      { type: "web_search_20250305", name: "web_search", ...uses },
      { type: "web_fetch_20250910", name: "web_fetch", ...uses },
    ];
  return [
    { type: "web_search_20260209", name: "web_search", ...uses },
    { type: "web_fetch_20260209", name: "web_fetch", ...uses },
  ];
}

/** `Name: value` lines (ANTHROPIC_CUSTOM_HEADERS, as Claude Code reads it) as headers. */
export function customHeaders(spec = process.env.ANTHROPIC_CUSTOM_HEADERS ?? ""): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of spec.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return headers;
}

const truthy = (v: string | undefined) => Boolean(v && !/^(0|false|no|off)$/i.test(v));
/** Which endpoint the environment selects: Bedrock (CLAUDE_CODE_USE_BEDROCK), Vertex (CLAUDE_CODE_USE_VERTEX), else Anthropic's API. */
export const selectedProvider = (): Provider =>
  truthy(process.env.CLAUDE_CODE_USE_BEDROCK)
    ? "bedrock"
    : truthy(process.env.CLAUDE_CODE_USE_VERTEX)
      ? "vertex"
      : "anthropic";

/** The model id a provider knows: Bedrock prefixes "anthropic."; a full id (with a dot or @) passes unchanged. */
export function providerModelId(model: string, provider: Provider): string {
  if (provider !== "bedrock" || /[.@:]/.test(model)) return model;
  return `anthropic.${model}`;
}

type Client = Pick<Anthropic, "messages"> & { maxRetries: number };

async function createClient(provider: Provider, maxRetries: number): Promise<Client> {
  const defaultHeaders = customHeaders();
  const failed =
    (pkg: string) =>
    (e: Error): never => {
      throw new ToolError(
        `${pkg} could not be loaded (${e.message}). Install it next to the server (npm install ${pkg}) or unset ${provider === "bedrock" ? "CLAUDE_CODE_USE_BEDROCK" : "CLAUDE_CODE_USE_VERTEX"}.`,
      );
    };
  if (provider === "bedrock") {
    const { AnthropicBedrock } = await import("@anthropic-ai/bedrock-sdk").catch(failed("@anthropic-ai/bedrock-sdk"));
    return new AnthropicBedrock({
      maxRetries,
      defaultHeaders,
      awsRegion: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION,
    }) as unknown as Client;
  }
  if (provider === "vertex") {
    const { AnthropicVertex } = await import("@anthropic-ai/vertex-sdk").catch(failed("@anthropic-ai/vertex-sdk"));
    return new AnthropicVertex({
      maxRetries,
      defaultHeaders,
      projectId: process.env.ANTHROPIC_VERTEX_PROJECT_ID,
      region: process.env.CLOUD_ML_REGION,
    }) as unknown as Client;
  }
  const { default: AnthropicClient } = await import("@anthropic-ai/sdk");
  const apiKey = process.env.ANTHROPIC_API_KEY || undefined;
  const auth = apiKey ? { apiKey, authToken: null } : { apiKey: null, authToken: process.env.ANTHROPIC_AUTH_TOKEN };
  return new AnthropicClient({ ...auth, maxRetries, defaultHeaders });
}

const PROGRESS_EVERY_MS = 1_000;

/** Streams one answer, reporting how much the model has written; returns the final message. */
async function streamAnswer(
  client: Client,
  params: Anthropic.MessageStreamParams,
  req: ModelRequest,
  signal: AbortSignal,
): Promise<Anthropic.Message> {
  const stream = client.messages.stream(params, { signal });
  let chars = 0;
  let thinking = false;
  let shown = 0;
  stream.on("streamEvent", (event) => {
    if (event.type !== "content_block_delta") return;
    const d = event.delta;
    thinking = d.type === "thinking_delta";
    chars +=
      d.type === "text_delta"
        ? d.text.length
        : d.type === "input_json_delta"
          ? d.partial_json.length
          : d.type === "thinking_delta"
            ? d.thinking.length
            : 0;
    if (Date.now() - shown < PROGRESS_EVERY_MS) return;
    shown = Date.now();
    req.onProgress?.(`the model is ${thinking ? "thinking" : "writing"} (~${Math.round(chars / 4)} tokens so far)`);
  });
  return stream.finalMessage();
}

function toUsage(u: Anthropic.Usage): Usage {
  return {
    input_tokens: u.input_tokens,
    output_tokens: u.output_tokens,
    cache_read_input_tokens: u.cache_read_input_tokens ?? 0,
    cache_creation_input_tokens: u.cache_creation_input_tokens ?? 0,
    thinking_tokens: u.output_tokens_details?.thinking_tokens ?? 0,
    web_search_requests: u.server_tool_use?.web_search_requests ?? 0,
    web_fetch_requests: u.server_tool_use?.web_fetch_requests ?? 0,
  };
}

const failedMidStream = (e: ApiErrorLike) =>
  e.status === undefined && /^(overloaded_error|api_error|rate_limit_error)$/.test(e.type ?? "");
const backoff = (attempt: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, Math.min(8_000, 500 * 2 ** attempt));
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

const isApiError = (e: unknown): e is ApiErrorLike =>
  e instanceof Error && ("status" in e || e.constructor.name.includes("Connection"));

/** A Messages API backend: Anthropic's API (key or bearer token), Amazon Bedrock or Google Vertex AI; streamed answers. */
export async function apiBackend(model: string, provider: Provider = selectedProvider()): Promise<ModelBackend> {
  const retries = Number(process.env.BACKEND_AGENT_MAX_RETRIES ?? 4);
  const client = await createClient(provider, retries);
  const limits = modelLimits(model);
  const id = providerModelId(model, provider);
  const serverTools = provider === "anthropic" && options.web ? ["web_search", "web_fetch"] : [];
  const probe = thinkingParams(limits, options.thinking, limits.max_output);
  return {
    kind: "anthropic",
    provider,
    model,
    serverTools,
    notes: probe.note ? [probe.note] : [],
    async call(req, signal) {
      const maxTokens = Math.min(req.maxTokens, limits.max_output);
      const { system, tools, messages } = withCacheBreakpoints(req);
      const web = provider === "anthropic" ? webTools(req.webUsesLeft ?? options.webMaxUses, limits) : [];
      const params: Anthropic.MessageStreamParams = {
        model: id,
        max_tokens: maxTokens,
        system,
        messages,
        tools: [...web, ...(tools ?? [])],
        ...thinkingParams(limits, options.thinking, maxTokens).params,
      };
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await streamAnswer(client, params, req, signal);
          const refusal = res.stop_details
            ? { category: res.stop_details.category, explanation: res.stop_details.explanation }
            : undefined;
          return {
            content: res.content as Block[],
            stopReason: res.stop_reason ?? "end_turn",
            model: res.model,
            usage: toUsage(res.usage),
            ...(refusal && { refusal }),
          };
        } catch (e) {
          if (signal.aborted || !isApiError(e)) throw e;
          // The SDK retries a failed request, not an answer that fails once streaming (an SSE error event): retry those here.
          if (failedMidStream(e) && attempt < client.maxRetries) {
            req.onProgress?.(`the answer broke off (${e.type}); retrying`);
            await backoff(attempt, signal);
            continue;
          }
          throw explainApiError(e, { model, provider, aliases: MODEL_ALIASES, retries: client.maxRetries });
        }
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
      const content =
        typeof block.content === "string"
          ? [{ type: "text" as const, text: block.content }]
          : (block.content ?? []).flatMap((c) => (c.type === "text" ? [{ type: "text" as const, text: c.text }] : []));
      return { type: "tool_result", toolUseId: block.tool_use_id, content, isError: block.is_error };
    }
    default:
      return undefined;
  }
}

function fromSampling(
  block: CreateMessageResultWithTools["content"] extends infer C ? (C extends (infer B)[] ? B : C) : never,
): Block | undefined {
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
    serverTools: [],
    notes: [],
    async call(req, signal) {
      const messages: SamplingMessage[] = req.messages.map((m) => {
        const blocks = typeof m.content === "string" ? [{ type: "text" as const, text: m.content }] : m.content;
        return { role: m.role, content: blocks.map(toSampling).filter((b) => b !== undefined) } as SamplingMessage;
      });
      const res = (await server.createMessage(
        {
          systemPrompt: req.system,
          messages,
          maxTokens: req.maxTokens,
          tools: req.tools.map((t) => ({ name: t.name, description: t.description, inputSchema: t.input_schema })),
          toolChoice: { mode: "auto" },
        },
        { signal, timeout: 10 * 60_000 },
      )) as CreateMessageResultWithTools;
      const content = (Array.isArray(res.content) ? res.content : [res.content])
        .map(fromSampling)
        .filter((b) => b !== undefined);
      const stop =
        res.stopReason === "toolUse" ? "tool_use" : res.stopReason === "maxTokens" ? "max_tokens" : "end_turn";
      return { content, stopReason: stop, usage: emptyUsage(), model: res.model };
    },
  };
}

/** Picks the model backend: Bedrock or Vertex when chosen, the Anthropic API with a key or token, else the client's sampling. */
export async function chooseBackend(
  model: string,
  server: Server | undefined,
  resuming = false,
): Promise<ModelBackend> {
  const sampling = server?.getClientCapabilities()?.sampling;
  if (resuming && model === SAMPLING_MODEL && sampling?.tools) return samplingBackend(server!);
  const provider = selectedProvider();
  const name = model === SAMPLING_MODEL ? DEFAULT_MODEL : model;
  if (provider !== "anthropic" || process.env.ANTHROPIC_API_KEY || process.env.ANTHROPIC_AUTH_TOKEN)
    return apiBackend(name, provider);
  if (sampling?.tools) return samplingBackend(server!);
  const why = sampling
    ? "The client offers MCP sampling, but without tool use, which the agent needs."
    : "The client does not offer MCP sampling.";
  throw new ToolError(
    `Task needs a model. Set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) in the server's environment (ANTHROPIC_BASE_URL for a proxy), ` +
      `CLAUDE_CODE_USE_BEDROCK=1 or CLAUDE_CODE_USE_VERTEX=1 for Amazon Bedrock or Google Vertex AI, or use a client that supports MCP sampling with tools. ${why}`,
  );
}
