// What a model costs and holds: usage accounting, prices and context windows from prices.json.
import prices from "./prices.json" with { type: "json" };
import type { Usage } from "./records.js";

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

/** Tokens the run has processed afresh; cache reads are left out (max_budget_usd bounds their cost). */
export const freshTokens = (u: Usage) => u.input_tokens + u.output_tokens + u.cache_creation_input_tokens;
