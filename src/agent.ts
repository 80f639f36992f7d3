import type Anthropic from "@anthropic-ai/sdk";
import { z } from "zod";
import { emptyUsage, type Block, type Message, type ModelBackend, type ToolSpec, type Usage } from "./model.js";
import { callTool, type CallResult, type Tool, type ToolContext } from "./tool.js";
import type { Verification } from "./verify.js";

export type AgentStatus = "completed" | "verification_failed" | "max_turns" | "budget_exhausted" | "cancelled" | "error";

export interface AgentOptions {
  backend: ModelBackend;
  system: string;
  tools: Tool[];
  ctx: ToolContext;
  prompt: string;
  maxTurns: number;
  maxTokens: number;
  deadline: number;
  fixRounds: number;
  verify: () => Promise<Verification>;
  record: (event: Record<string, unknown>) => void;
}

export interface AgentOutcome {
  status: AgentStatus;
  summary: string;
  verification?: Verification;
  usage: Usage;
  turns: number;
  fixRounds: number;
  error?: string;
}

const MAX_OUTPUT_TOKENS = 16_000;
const HEARTBEAT_MS = 5_000;

export const toolSpec = (t: Tool): ToolSpec => ({ name: t.name, description: t.description, input_schema: z.toJSONSchema(t.input, { io: "input" }) as ToolSpec["input_schema"] });

function toToolResult(id: string, r: CallResult): Block {
  const content = r.content.map((c) => (c.type === "text" ? { type: "text" as const, text: c.text } : { type: "image" as const, source: { type: "base64" as const, media_type: c.mimeType as "image/png", data: c.data } }));
  return { type: "tool_result", tool_use_id: id, content, ...(r.isError && { is_error: true }) };
}

function describeCall(name: string, input: unknown): string {
  const a = (input ?? {}) as Record<string, unknown>;
  const detail = a.file_path ?? a.command ?? a.pattern ?? "";
  return `${name} ${String(detail).split("\n")[0]!.slice(0, 80)}`.trim();
}

function failureReport(v: Verification): string {
  const failed = v.checks.filter((c) => !c.passed).map((c) => `### ${c.name}${c.command ? ` (\`${c.command}\`)` : ""}\n${c.details}`);
  return `The server ran its own checks after your summary, and they failed:\n\n${failed.join("\n\n")}\n\nFix the cause (not the checks), run them again with Run, then give your final summary.`;
}

const addUsage = (a: Usage, b: Usage): Usage => ({
  input_tokens: a.input_tokens + b.input_tokens,
  output_tokens: a.output_tokens + b.output_tokens,
  cache_read_input_tokens: a.cache_read_input_tokens + b.cache_read_input_tokens,
  cache_creation_input_tokens: a.cache_creation_input_tokens + b.cache_creation_input_tokens,
});

const totalTokens = (u: Usage) => u.input_tokens + u.output_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;

/** The sub-agent loop: model turn, tool calls, repeat; then the server verifies and sends failures back for fix rounds. */
export async function runAgent(o: AgentOptions): Promise<AgentOutcome> {
  const messages: Message[] = [{ role: "user", content: o.prompt }];
  const specs = o.tools.map(toolSpec);
  const out: AgentOutcome = { status: "completed", summary: "", usage: emptyUsage(), turns: 0, fixRounds: 0 };
  let activity = "starting";
  const started = Date.now();
  const heartbeat = setInterval(() => o.ctx.progress(`${activity} · ${Math.round((Date.now() - started) / 1000)}s`), HEARTBEAT_MS);
  const stopped = (): AgentStatus | undefined => {
    if (o.ctx.signal.aborted) return "cancelled";
    if (out.turns >= o.maxTurns) return "max_turns";
    if (totalTokens(out.usage) >= o.maxTokens || Date.now() >= o.deadline) return "budget_exhausted";
    return undefined;
  };
  try {
    for (;;) {
      const stop = stopped();
      if (stop) {
        out.status = stop;
        break;
      }
      activity = `turn ${out.turns + 1}/${o.maxTurns} · waiting for the model`;
      o.ctx.progress(activity);
      o.record({ type: "request", turn: out.turns + 1, messages: messages.length });
      const reply = await o.backend.call({ system: o.system, tools: specs, messages, maxTokens: MAX_OUTPUT_TOKENS }, o.ctx.signal);
      out.turns++;
      out.usage = addUsage(out.usage, reply.usage);
      o.record({ type: "response", turn: out.turns, stop_reason: reply.stopReason, content: reply.content, usage: reply.usage, model: reply.model });
      messages.push({ role: "assistant", content: reply.content });

      const calls = reply.content.filter((b): b is Anthropic.ToolUseBlockParam => b.type === "tool_use");
      if (calls.length) {
        const results: Block[] = [];
        for (const call of calls) {
          activity = `turn ${out.turns}/${o.maxTurns} · ${describeCall(call.name, call.input)}`;
          o.ctx.progress(activity);
          const tool = o.tools.find((t) => t.name === call.name);
          const result = tool
            ? await callTool(tool, call.input, o.ctx)
            : { content: [{ type: "text" as const, text: `Tool "${call.name}" is not available to this agent. Available: ${o.tools.map((t) => t.name).join(", ")}.` }], isError: true };
          o.record({ type: "tool", turn: out.turns, name: call.name, input: call.input, isError: result.isError ?? false, result: result.content });
          results.push(toToolResult(call.id, result));
        }
        messages.push({ role: "user", content: results });
        continue;
      }
      const text = reply.content.flatMap((b) => (b.type === "text" ? [b.text] : [])).join("\n").trim();
      if (reply.stopReason === "max_tokens") {
        messages.push({ role: "user", content: "Your reply was cut off at the output limit. Continue where you stopped." });
        continue;
      }
      out.summary = text;
      activity = "verifying";
      out.verification = await o.verify();
      o.record({ type: "verification", ...out.verification });
      if (out.verification.passed) break;
      if (out.fixRounds >= o.fixRounds) {
        out.status = "verification_failed";
        break;
      }
      out.fixRounds++;
      messages.push({ role: "user", content: failureReport(out.verification) });
    }
    if (out.status === "max_turns" || out.status === "budget_exhausted") {
      activity = "verifying";
      out.verification = await o.verify();
      o.record({ type: "verification", ...out.verification });
    }
  } catch (e) {
    out.status = o.ctx.signal.aborted ? "cancelled" : "error";
    if (out.status === "error") out.error = (e as Error).message;
    o.record({ type: "error", message: (e as Error).message });
  } finally {
    clearInterval(heartbeat);
  }
  return out;
}
