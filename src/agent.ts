import type Anthropic from "@anthropic-ai/sdk";
import { addUsage, costUsd, type Block, type Message, type ModelBackend, type ToolSpec, type Usage } from "./model.js";
import { callTool, Interrupt, jsonSchemas, type CallResult, type Tool, type ToolContext } from "./tool.js";
import { failureReport, type Verification } from "./verify/index.js";

export type AgentStatus = "completed" | "verification_failed" | "unverified" | "max_turns" | "budget_exhausted" | "cancelled" | "error" | "needs_input";

/** Thrown by a tool to end the run and hand a question to the user (AskUserQuestion without elicitation). */
export class NeedsInput extends Interrupt {
  constructor(readonly question: { question: string; options?: string[] }) {
    super(question.question);
  }
}

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
}

const MAX_OUTPUT_TOKENS = 16_000;

export const toolSpec = (t: Tool): ToolSpec => ({ name: t.name, description: t.description, input_schema: jsonSchemas(t).input });

function toToolResult(id: string, r: CallResult): Block {
  const content = r.content.map((c) => (c.type === "text" ? { type: "text" as const, text: c.text } : { type: "image" as const, source: { type: "base64" as const, media_type: c.mimeType as "image/png", data: c.data } }));
  return { type: "tool_result", tool_use_id: id, content, ...(r.isError && { is_error: true }) };
}

function describeCall(name: string, input: unknown): string {
  const a = (input ?? {}) as Record<string, unknown>;
  const detail = a.file_path ?? a.command ?? a.pattern ?? a.question ?? "";
  return `${name} ${String(detail).split("\n")[0]!.slice(0, 80)}`.trim();
}

/** Tokens the run has processed afresh; cache reads are left out (max_budget_usd bounds their cost). */
const freshTokens = (u: Usage) => u.input_tokens + u.output_tokens + u.cache_creation_input_tokens;

/** Conversation size (characters of JSON) above which old tool results are cleared before the next model call. */
export const CONTEXT_CHARS = 400_000;
const KEEP_RECENT_MESSAGES = 8;
const CLEARED = "[Earlier tool result cleared to keep the conversation within the model's context; call the tool again if you still need it.]";

/** Clears the content of tool results older than the last few messages, oldest first, until the conversation fits. */
export function compactConversation(messages: Message[], maxChars = CONTEXT_CHARS): Message[] {
  let size = JSON.stringify(messages).length;
  if (size <= maxChars) return messages;
  return messages.map((m, i) => {
    if (size <= maxChars || i >= messages.length - KEEP_RECENT_MESSAGES || m.role !== "user" || typeof m.content === "string") return m;
    const content = (m.content as Block[]).map((b) => {
      if (b.type !== "tool_result" || size <= maxChars) return b;
      const before = JSON.stringify(b.content ?? "").length;
      size -= before - JSON.stringify(CLEARED).length;
      return { ...b, content: CLEARED };
    });
    return { ...m, content } as Message;
  });
}

/** The sub-agent loop: model turn, tool calls, repeat; then the server verifies and sends failures back for fix rounds. */
export async function runAgent(o: AgentOptions): Promise<AgentOutcome> {
  const messages = [...o.messages];
  const specs = o.tools.map(toolSpec);
  const out: AgentOutcome = { status: "completed", summary: "", usage: o.spent.usage, costUsd: costUsd(o.backend.model, o.spent.usage), modelCalls: o.spent.modelCalls, turns: o.spent.turns, fixRounds: 0 };
  const b = o.budget;
  const report = (activity: string) => {
    o.ctx.progress(activity);
    o.onTurn({ turn: out.turns, activity, usage: out.usage, costUsd: out.costUsd, modelCalls: out.modelCalls });
  };
  const limitHit = (): AgentStatus | undefined => {
    if (o.ctx.signal.aborted) return "cancelled";
    if (out.turns >= b.maxTurns) return "max_turns";
    if (freshTokens(out.usage) >= b.maxTokens || Date.now() >= b.deadline || (b.maxCostUsd !== undefined && out.costUsd >= b.maxCostUsd)) return "budget_exhausted";
    return undefined;
  };
  const checkWork = async () => {
    report("verifying");
    out.verification = await o.verify();
    o.record({ type: "verification", ...out.verification });
    return out.verification;
  };
  try {
    for (;;) {
      const stop = limitHit();
      if (stop) {
        out.status = stop;
        if (stop !== "cancelled") await checkWork();
        break;
      }
      report(`turn ${out.turns + 1}/${b.maxTurns} · waiting for the model`);
      o.record({ type: "request", turn: out.turns + 1, messages: messages.length });
      const reply = await o.backend.call({ system: o.system, tools: specs, messages: compactConversation(messages), maxTokens: MAX_OUTPUT_TOKENS }, o.ctx.signal);
      out.turns++;
      out.modelCalls++;
      out.usage = addUsage(out.usage, reply.usage);
      out.costUsd = costUsd(o.backend.model, out.usage);
      o.record({ type: "response", turn: out.turns, stop_reason: reply.stopReason, content: reply.content, usage: reply.usage, model: reply.model });
      messages.push({ role: "assistant", content: reply.content });
      await o.saveMessages(messages);

      const calls = reply.content.filter((block): block is Anthropic.ToolUseBlockParam => block.type === "tool_use");
      if (calls.length) {
        const results: Block[] = [];
        for (const call of calls) {
          report(`turn ${out.turns}/${b.maxTurns} · ${describeCall(call.name, call.input)}`);
          const tool = o.tools.find((t) => t.name === call.name);
          const result = tool
            ? await callTool(tool, call.input, o.ctx).catch(async (e: unknown) => {
                // Pausing for the user: keep the results of the calls that did run, so a resume does not repeat them.
                if (e instanceof NeedsInput && results.length) {
                  messages.push({ role: "user", content: results });
                  await o.saveMessages(messages);
                }
                throw e;
              })
            : { content: [{ type: "text" as const, text: `Tool "${call.name}" is not available to this agent. Available: ${o.tools.map((t) => t.name).join(", ")}.` }], isError: true };
          o.record({ type: "tool", turn: out.turns, name: call.name, input: call.input, isError: result.isError ?? false, result: result.content });
          results.push(toToolResult(call.id, result));
        }
        messages.push({ role: "user", content: results });
        await o.saveMessages(messages);
        continue;
      }
      if (reply.stopReason === "max_tokens") {
        messages.push({ role: "user", content: "Your reply was cut off at the output limit. Continue where you stopped." });
        continue;
      }
      out.summary = reply.content.flatMap((block) => (block.type === "text" ? [block.text] : [])).join("\n").trim();
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
  const blocks = (m: Message | undefined): Block[] => (!m ? [] : typeof m.content === "string" ? [{ type: "text", text: m.content }] : (m.content as Block[]));
  const answered = new Set(blocks(messages[lastAssistant + 1]).flatMap((b) => (b.type === "tool_result" ? [b.tool_use_id] : [])));
  const pending = blocks(messages[lastAssistant]).filter((b): b is Anthropic.ToolUseBlockParam => b.type === "tool_use" && !answered.has(b.id));
  const results: Block[] = pending.map((call) => ({
    type: "tool_result",
    tool_use_id: call.id,
    content: call.name === "AskUserQuestion" ? `The user answered: ${prompt}` : "This call was interrupted before it ran; run it again if it is still needed.",
  }));
  const text: Block = { type: "text", text: prompt };
  if (messages.at(-1)?.role === "user") messages[messages.length - 1] = { role: "user", content: [...blocks(messages.at(-1)), ...results, text] };
  else messages.push({ role: "user", content: [...results, text] });
  return messages;
}
