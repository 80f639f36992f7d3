import type Anthropic from "@anthropic-ai/sdk";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { ToolError } from "../server/errors.js";
import { apiBackend, selectedProvider } from "./anthropic.js";
import type { Usage } from "./records.js";
import { SAMPLING_MODEL, samplingBackend } from "./sampling.js";

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
