// Content blocks of the conversation as the agent loop handles them: tool results, one-line call descriptions, text.
import type { CallResult } from "../server/tool.js";
import type { AgentOptions, AgentOutcome, Budget } from "./agent.js";
import type { ChildRun, Spent } from "./delegation.js";
import type { Block, ModelReply } from "./model.js";
import { addUsage, costUsd, emptyUsage, freshTokens } from "./pricing.js";
import type { AgentStatus } from "./records.js";

/** Most output tokens one answer may take. */
export const MAX_OUTPUT_TOKENS = 32_000;

const TRUNCATED_CALL = (limit: number) =>
  `Your reply reached the output limit (${limit} tokens) in the middle of this call, so the call was cut off and NOT run. Make it again with a smaller input: for a large file, Write a first part and add the rest with Edit.`;

export const textOf = (content: Block[]) =>
  content
    .flatMap((b) => (b.type === "text" ? [b.text] : []))
    .join("\n")
    .trim();

export function toToolResult(id: string, r: CallResult): Block {
  const content = r.content.map((c) =>
    c.type === "text"
      ? { type: "text" as const, text: c.text }
      : {
          type: "image" as const,
          source: { type: "base64" as const, media_type: c.mimeType as "image/png", data: c.data },
        },
  );
  return { type: "tool_result", tool_use_id: id, content, ...(r.isError && { is_error: true }) };
}

export function describeCall(name: string, input: unknown): string {
  const a = (input ?? {}) as Record<string, unknown>;
  const detail = a.file_path ?? a.command ?? a.pattern ?? a.question ?? "";
  return `${name} ${String(detail).split("\n")[0]!.slice(0, 80)}`.trim();
}

/** The result a call cut off by the output limit gets instead of running. */
export const truncatedResult = (): CallResult => ({
  content: [{ type: "text", text: TRUNCATED_CALL(MAX_OUTPUT_TOKENS) }],
  isError: true,
});

/** What the report says when the model refused, with the API's category and explanation. */
export function refusalMessage(reply: ModelReply): string {
  const r = reply.refusal;
  const why = r ? ` (category: ${r.category ?? "unnamed"}${r.explanation ? `; ${r.explanation}` : ""})` : "";
  return `The model refused to continue this task${why}. Its words are in the summary. Rephrase the task, split off the part it refused, or choose another model.`;
}

/** A delegated run's spending joins the parent's totals (shared budgets); its summary joins the report. */
export function addDelegated(out: AgentOutcome, result: CallResult, model: string): void {
  const d = result.structuredContent as { delegated?: ChildRun; spent?: Spent } | undefined;
  if (!d?.delegated || !d.spent) return;
  out.children.push(d.delegated);
  out.turns += d.spent.turns;
  out.modelCalls += d.spent.modelCalls;
  out.usage = addUsage(out.usage, d.spent.usage);
  out.costUsd = costUsd(model, out.usage);
}

/** The outcome a run starts from: what earlier legs of a resumed run spent, counted on. */
export function startingOutcome(o: AgentOptions): AgentOutcome {
  return {
    status: "completed",
    summary: "",
    // Usage recorded before a counter existed (an older run being resumed) counts it as 0.
    usage: addUsage(emptyUsage(), o.spent.usage),
    costUsd: costUsd(o.backend.model, o.spent.usage),
    modelCalls: o.spent.modelCalls,
    turns: o.spent.turns,
    fixRounds: 0,
    notes: [...o.backend.notes],
    children: [],
  };
}

/** The limit the run has reached, if any: cancelled, turns, or the token, time or cost budget. */
export function limitHit(out: AgentOutcome, b: Budget, aborted: boolean): AgentStatus | undefined {
  if (aborted) return "cancelled";
  if (out.turns >= b.maxTurns) return "max_turns";
  const overCost = b.maxCostUsd !== undefined && out.costUsd >= b.maxCostUsd;
  if (freshTokens(out.usage) >= b.maxTokens || Date.now() >= b.deadline || overCost) return "budget_exhausted";
  return undefined;
}
