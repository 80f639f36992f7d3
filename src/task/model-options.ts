// The server's model settings (thinking, web tools), set once from the command line.
import type Anthropic from "@anthropic-ai/sdk";
import type { ModelLimits } from "./pricing.js";

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
