import { ToolError } from "../server/errors.js";

/** What the Messages API answered when it did not answer with a message, turned into text a person can act on. */

/** The request was larger than the model's context window: the agent shrinks the conversation and tries again. */
export class PromptTooLong extends Error {}

/** The API failed for good; `kind` says whether retrying later can help. */
export class ApiFailure extends ToolError {
  constructor(
    message: string,
    readonly kind: "auth" | "model" | "request" | "overloaded" | "connection",
  ) {
    super(message);
  }
}

export interface ApiErrorLike {
  status?: number;
  type?: string | null;
  apiMessage?: string | null;
  message: string;
}

export interface ErrorContext {
  model: string;
  provider: "anthropic" | "bedrock" | "vertex";
  aliases: Record<string, string>;
  retries: number;
}

const TOO_LONG = /prompt is too long|too many tokens|exceeds? the (model's )?(maximum )?context/i;

const credentialsHint = (provider: ErrorContext["provider"]) =>
  provider === "bedrock"
    ? "Check the AWS credentials and region (AWS_REGION, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) the server runs with, and that the account may invoke this model."
    : provider === "vertex"
      ? "Check the Google Cloud credentials (gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS), ANTHROPIC_VERTEX_PROJECT_ID and CLOUD_ML_REGION the server runs with."
      : "Set ANTHROPIC_API_KEY to a valid key in the server's environment (or ANTHROPIC_AUTH_TOKEN for a bearer token, as gateways use), then restart the server.";

/** Classifies an SDK error; throws PromptTooLong for an over-long prompt, returns an ApiFailure otherwise. */
export function explainApiError(e: ApiErrorLike, c: ErrorContext): ApiFailure {
  const status = e.status;
  const words = e.apiMessage ?? e.message;
  const head = `${status ?? ""} ${e.type ?? ""}`.replace(/\s+/g, " ").trim();
  if (status === 400 && TOO_LONG.test(words)) throw new PromptTooLong(words);
  if (status === 401 || status === 403) {
    const what = status === 401 ? "did not accept the credentials" : "refused this request for these credentials";
    return new ApiFailure(
      `The ${providerName(c.provider)} ${what} (${head}: ${words}). ${credentialsHint(c.provider)}`,
      "auth",
    );
  }
  if (status === 404) {
    const aliases = Object.entries(c.aliases)
      .map(([a, id]) => `${a} (${id})`)
      .join(", ");
    return new ApiFailure(
      `The model "${c.model}" was not found (${head}: ${words}). Accepted aliases: ${aliases}; or give a full model id your account can use. ` +
        `Choose another model with Task's model parameter, or for every run with BACKEND_AGENT_MODEL in the server's environment.`,
      "model",
    );
  }
  if (status === undefined && e.type) {
    return new ApiFailure(
      `The ${providerName(c.provider)} broke off its answer (${e.type}: ${words}) on each of ${c.retries + 1} tries; retries ran out. ` +
        `Resume the run later with Task {resume: run_id}, or allow more retries with BACKEND_AGENT_MAX_RETRIES.`,
      "overloaded",
    );
  }
  if (status === undefined) {
    return new ApiFailure(
      `Could not reach the ${providerName(c.provider)} after ${c.retries} retries: ${words}. Check the network and ANTHROPIC_BASE_URL; retries ran out.`,
      "connection",
    );
  }
  if (status === 429 || status === 529 || status >= 500 || status === 408 || status === 409) {
    return new ApiFailure(
      `The ${providerName(c.provider)} was still failing after ${c.retries} retries (${head}: ${words}); retries ran out. ` +
        `Resume the run later with Task {resume: run_id}, or allow more retries with BACKEND_AGENT_MAX_RETRIES.`,
      "overloaded",
    );
  }
  return new ApiFailure(`The ${providerName(c.provider)} rejected the request (${head}): ${words}`, "request");
}

const providerName = (p: ErrorContext["provider"]) =>
  p === "bedrock" ? "Amazon Bedrock API" : p === "vertex" ? "Vertex AI API" : "Anthropic API";
