import type Anthropic from "@anthropic-ai/sdk";
import { ApiFailure, PromptTooLong } from "./api-errors.js";
import type { ChildRun, Spent } from "./delegation.js";
import {
  compactConversation,
  contextBudget,
  estimateTokens,
  fitConversation,
  markOf,
  type ContextMark,
} from "./context.js";
import type { Block, Message, ModelBackend, ModelReply, ToolSpec, Usage } from "./model.js";
import { modelOptions } from "./model-options.js";
import { addUsage, costUsd, emptyUsage, modelLimits } from "./pricing.js";
import { callTool, jsonSchemas, type CallResult, type Tool, type ToolContext } from "../server/tool.js";
import { NeedsInput } from "../server/errors.js";
import { failureReport, type Verification } from "./verify/index.js";
import type { AgentStatus } from "./records.js";

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

const MAX_OUTPUT_TOKENS = 32_000;
/** Times the conversation is shrunk and the request retried after the API says the prompt is too long. */
const SHRINK_ATTEMPTS = 3;

export const toolSpec = (t: Tool): ToolSpec => ({
  name: t.name,
  description: t.description,
  input_schema: jsonSchemas(t).input,
});

function toToolResult(id: string, r: CallResult): Block {
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

function describeCall(name: string, input: unknown): string {
  const a = (input ?? {}) as Record<string, unknown>;
  const detail = a.file_path ?? a.command ?? a.pattern ?? a.question ?? "";
  return `${name} ${String(detail).split("\n")[0]!.slice(0, 80)}`.trim();
}

/** Tokens the run has processed afresh; cache reads are left out (max_budget_usd bounds their cost). */
export const freshTokens = (u: Usage) => u.input_tokens + u.output_tokens + u.cache_creation_input_tokens;

/** Kept for callers that clear old tool results by size; the agent itself sizes by the model's context window. */
export { compactConversation };

const textOf = (content: Block[]) =>
  content
    .flatMap((b) => (b.type === "text" ? [b.text] : []))
    .join("\n")
    .trim();

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

const TRUNCATED_CALL = (limit: number) =>
  `Your reply reached the output limit (${limit} tokens) in the middle of this call, so the call was cut off and NOT run. Make it again with a smaller input: for a large file, Write a first part and add the rest with Edit.`;

/** The sub-agent loop: model turn, tool calls, repeat; then the server verifies and sends failures back for fix rounds. */
export async function runAgent(o: AgentOptions): Promise<AgentOutcome> {
  let messages = [...o.messages];
  const specs = o.tools.map(toolSpec);
  const web = modelOptions();
  const webAllowed = o.web ?? true;
  const system = webAllowed ? o.system + webNote(o.backend, web.webMaxUses) : o.system;
  const window = modelLimits(o.backend.model).context;
  const limits = contextBudget(window);
  const out: AgentOutcome = {
    // Usage recorded before a counter existed (an older run being resumed) counts it as 0.
    status: "completed",
    summary: "",
    usage: addUsage(emptyUsage(), o.spent.usage),
    costUsd: costUsd(o.backend.model, o.spent.usage),
    modelCalls: o.spent.modelCalls,
    turns: o.spent.turns,
    fixRounds: 0,
    notes: [...o.backend.notes],
    children: [],
  };
  const b = o.budget;
  let mark: ContextMark | undefined;
  let shrinks = 0;
  const report = (activity: string) => {
    o.ctx.progress(activity);
    o.onTurn({ turn: out.turns, activity, usage: out.usage, costUsd: out.costUsd, modelCalls: out.modelCalls });
  };
  const spend = (usage: Usage) => {
    out.modelCalls++;
    out.usage = addUsage(out.usage, usage);
    out.costUsd = costUsd(o.backend.model, out.usage);
  };
  /** A delegated run's spending joins this run's totals (shared budgets); its summary joins the report. */
  const addDelegated = (result: CallResult) => {
    const d = result.structuredContent as { delegated?: ChildRun; spent?: Spent } | undefined;
    if (!d?.delegated || !d.spent) return;
    out.children.push(d.delegated);
    out.turns += d.spent.turns;
    out.modelCalls += d.spent.modelCalls;
    out.usage = addUsage(out.usage, d.spent.usage);
    out.costUsd = costUsd(o.backend.model, out.usage);
  };
  const limitHit = (): AgentStatus | undefined => {
    if (o.ctx.signal.aborted) return "cancelled";
    if (out.turns >= b.maxTurns) return "max_turns";
    if (
      freshTokens(out.usage) >= b.maxTokens ||
      Date.now() >= b.deadline ||
      (b.maxCostUsd !== undefined && out.costUsd >= b.maxCostUsd)
    )
      return "budget_exhausted";
    return undefined;
  };
  const checkWork = async () => {
    report("verifying");
    out.verification = await o.verify();
    o.record({ type: "verification", ...out.verification });
    return out.verification;
  };
  /** Clears old tool results, then summarises older turns, until the conversation fits under `target` tokens. */
  const shrink = async (target: number, summariseAbove: number, keepRecent?: number) => {
    const before = estimateTokens(messages, mark);
    const beforeChars = JSON.stringify(messages).length;
    const fit = await fitConversation(messages, {
      backend: o.backend,
      contextTokens: window,
      mark,
      targetTokens: target,
      summariseAbove,
      keepRecent,
      signal: o.ctx.signal,
    });
    if (fit.usage) spend(fit.usage);
    if (!fit.action) return false;
    messages = fit.messages;
    const afterChars = JSON.stringify(messages).length;
    mark = { tokens: Math.max(afterChars / 6, before - (beforeChars - afterChars) / 3), chars: afterChars };
    o.record({
      type: "context",
      action: fit.action,
      estimated_tokens_before: Math.round(before),
      context_window: window,
    });
    report(
      `turn ${out.turns + 1}/${b.maxTurns} · ${fit.action === "summarised" ? "summarised older turns" : "cleared old tool results"} to stay within the context window`,
    );
    await o.saveMessages(messages);
    return true;
  };
  const ask = async (): Promise<ModelReply | undefined> => {
    if (estimateTokens(messages, mark) > limits.clearAbove) await shrink(limits.clearTo, limits.summariseAbove);
    const turn = `turn ${out.turns + 1}/${b.maxTurns}`;
    report(`${turn} · waiting for the model`);
    o.record({ type: "request", turn: out.turns + 1, messages: messages.length });
    const webUsesLeft = webAllowed ? web.webMaxUses - out.usage.web_search_requests - out.usage.web_fetch_requests : 0;
    try {
      const reply = await o.backend.call(
        {
          system,
          tools: specs,
          messages,
          maxTokens: MAX_OUTPUT_TOKENS,
          webUsesLeft,
          onProgress: (note) => report(`${turn} · ${note}`),
        },
        o.ctx.signal,
      );
      shrinks = 0;
      return reply;
    } catch (e) {
      if (!(e instanceof PromptTooLong)) throw e;
      o.record({ type: "prompt_too_long", message: e.message });
      // The API measured the prompt as over the limit: shrink hard (keep only the newest turns verbatim) and retry.
      const measured = /(\d+) tokens > (\d+)/.exec(e.message);
      const ceiling = measured ? Number(measured[2]) : window;
      mark = { tokens: measured ? Number(measured[1]) : window, chars: JSON.stringify(messages).length };
      if (shrinks++ >= SHRINK_ATTEMPTS || !(await shrink(ceiling * 0.6, ceiling * 0.6, 4))) {
        throw new ApiFailure(
          `The conversation no longer fits in the model's context window (${window} tokens), even after clearing old tool results and summarising: ${e.message}`,
          "request",
        );
      }
      out.notes.push(
        "The API said the prompt was too long; old tool results were cleared and older turns summarised, and the request was retried.",
      );
      return undefined;
    }
  };
  try {
    for (;;) {
      const stop = limitHit();
      if (stop) {
        out.status = stop;
        if (stop !== "cancelled") await checkWork();
        break;
      }
      const reply = await ask();
      if (!reply) continue;
      out.turns++;
      spend(reply.usage);
      o.record({
        type: "response",
        turn: out.turns,
        stop_reason: reply.stopReason,
        content: reply.content,
        usage: reply.usage,
        model: reply.model,
        ...(reply.refusal && { refusal: reply.refusal }),
      });
      const last = messages.at(-1);
      // A paused turn goes back as it is and the model continues it; its continuation joins the same assistant message.
      if (last?.role === "assistant")
        messages[messages.length - 1] = {
          role: "assistant",
          content: [...(last.content as Block[]), ...reply.content],
        };
      else messages.push({ role: "assistant", content: reply.content });
      if (reply.usage.input_tokens + reply.usage.output_tokens > 0) mark = markOf(messages, reply.usage);
      await o.saveMessages(messages);

      if (reply.stopReason === "refusal") {
        out.status = "refused";
        out.summary = textOf(reply.content);
        const why = reply.refusal
          ? ` (category: ${reply.refusal.category ?? "unnamed"}${reply.refusal.explanation ? `; ${reply.refusal.explanation}` : ""})`
          : "";
        out.error = `The model refused to continue this task${why}. Its words are in the summary. Rephrase the task, split off the part it refused, or choose another model.`;
        break;
      }
      if (reply.stopReason === "pause_turn") continue;
      // Cut off by the output limit, or by the context window (which also means the conversation must shrink).
      const cutOff = reply.stopReason === "max_tokens" || reply.stopReason === "model_context_window_exceeded";
      if (reply.stopReason === "model_context_window_exceeded")
        mark = { tokens: window, chars: JSON.stringify(messages).length };

      const calls = reply.content.filter((block): block is Anthropic.ToolUseBlockParam => block.type === "tool_use");
      if (calls.length) {
        // Cut off at the output limit: the last call's input is incomplete, so it is not run.
        const truncated = cutOff ? calls.at(-1) : undefined;
        const results: Block[] = [];
        for (const call of calls) {
          report(`turn ${out.turns}/${b.maxTurns} · ${describeCall(call.name, call.input)}`);
          const tool = o.tools.find((t) => t.name === call.name);
          const result: CallResult =
            call === truncated
              ? { content: [{ type: "text", text: TRUNCATED_CALL(MAX_OUTPUT_TOKENS) }], isError: true }
              : tool
                ? await callTool(tool, call.input, o.ctx).catch(async (e: unknown) => {
                    // Pausing for the user: keep the results of the calls that did run, so a resume does not repeat them.
                    if (e instanceof NeedsInput && results.length) {
                      messages.push({ role: "user", content: results });
                      await o.saveMessages(messages);
                    }
                    throw e;
                  })
                : {
                    content: [
                      {
                        type: "text" as const,
                        text: `Tool "${call.name}" is not available to this agent. Available: ${o.tools.map((t) => t.name).join(", ")}.`,
                      },
                    ],
                    isError: true,
                  };
          o.record({
            type: "tool",
            turn: out.turns,
            name: call.name,
            input: call.input,
            isError: result.isError ?? false,
            result: result.content,
            ...(call === truncated && { truncated: true }),
          });
          addDelegated(result);
          results.push(toToolResult(call.id, result));
        }
        messages.push({ role: "user", content: results });
        await o.saveMessages(messages);
        continue;
      }
      if (cutOff) {
        messages.push({
          role: "user",
          content: "Your reply was cut off at the output limit. Continue where you stopped.",
        });
        continue;
      }
      out.summary = textOf(reply.content);
      // Verification decides the outcome: nothing broken ends the run (completed, or unverified when nothing could be checked).
      const verdict = await checkWork();
      if (verdict.outcome !== "failed") {
        if (verdict.outcome === "unverified") out.status = "unverified";
        break;
      }
      if (out.fixRounds >= o.fixRounds) {
        out.status = "verification_failed";
        break;
      }
      out.fixRounds++;
      messages.push({ role: "user", content: failureReport(out.verification!) });
      await o.saveMessages(messages);
    }
  } catch (e) {
    if (e instanceof NeedsInput) {
      out.status = "needs_input";
      out.question = e.question;
    } else {
      out.status = o.ctx.signal.aborted ? "cancelled" : "error";
      if (out.status === "error") out.error = (e as Error).message;
    }
    o.record({ type: out.status, message: (e as Error).message });
  }
  return out;
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
