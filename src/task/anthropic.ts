// The Anthropic Messages API backend (and Bedrock, Vertex): streaming, retries, thinking, web tools, cache breakpoints.
import type Anthropic from "@anthropic-ai/sdk";
import { explainApiError, type ApiErrorLike } from "./api-errors.js";
import { ToolError } from "../server/errors.js";
import {
  type Block,
  type Message,
  MODEL_ALIASES,
  type ModelBackend,
  type ModelRequest,
  type Provider,
} from "./model.js";
import { modelOptions, thinkingParams } from "./model-options.js";
import { modelLimits, type ModelLimits } from "./pricing.js";
import type { Usage } from "./records.js";

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
  if (!modelOptions().web || usesLeft <= 0) return [];
  const domains = modelOptions().webDomains.length ? { allowed_domains: modelOptions().webDomains } : {};
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
  const serverTools = provider === "anthropic" && modelOptions().web ? ["web_search", "web_fetch"] : [];
  const probe = thinkingParams(limits, modelOptions().thinking, limits.max_output);
  return {
    kind: "anthropic",
    provider,
    model,
    serverTools,
    notes: probe.note ? [probe.note] : [],
    async call(req, signal) {
      const maxTokens = Math.min(req.maxTokens, limits.max_output);
      const { system, tools, messages } = withCacheBreakpoints(req);
      const web = provider === "anthropic" ? webTools(req.webUsesLeft ?? modelOptions().webMaxUses, limits) : [];
      const params: Anthropic.MessageStreamParams = {
        model: id,
        max_tokens: maxTokens,
        system,
        messages,
        tools: [...web, ...(tools ?? [])],
        ...thinkingParams(limits, modelOptions().thinking, maxTokens).params,
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
