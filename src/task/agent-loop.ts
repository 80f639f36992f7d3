// The sub-agent loop, one step per method: ask the model (keeping the conversation within its context), run the tools
// it calls, and when it says it is done let the server verify, sending what the run broke back for fix rounds.
import { performance } from "node:perf_hooks";
import type Anthropic from "@anthropic-ai/sdk";
import { NeedsInput } from "../server/errors.js";
import { type CallResult, callTool } from "../server/tool.js";
import type { AgentOptions, AgentOutcome } from "./agent.js";
import { ApiFailure, PromptTooLong } from "./api-errors.js";
import { type ContextMark, contextBudget, estimateTokens, fitConversation, markOf } from "./context.js";
import {
  addDelegated,
  describeCall,
  limitHit,
  MAX_OUTPUT_TOKENS,
  refusalMessage,
  startingOutcome,
  textOf,
  toToolResult,
  truncatedResult,
} from "./blocks.js";
import type { Block, Message, ModelReply, ToolSpec, Usage } from "./model.js";
import { modelOptions } from "./model-options.js";
import { addUsage, costUsd, modelLimits } from "./pricing.js";
import type { AgentStatus } from "./records.js";
import { failureReport } from "./verify/index.js";

/** Times the conversation is shrunk and the request retried after the API says the prompt is too long. */
const SHRINK_ATTEMPTS = 3;

/** What ends the loop: the status to end with. */
class Done extends Error {
  constructor(readonly status?: AgentStatus) {
    super("done");
  }
}

export class AgentLoop {
  private messages: Message[];
  private readonly window: number;
  private readonly limits: ReturnType<typeof contextBudget>;
  private readonly webAllowed: boolean;
  private readonly system: string;
  private mark: ContextMark | undefined;
  private shrinks = 0;
  readonly out: AgentOutcome;

  constructor(
    private readonly o: AgentOptions,
    private readonly specs: ToolSpec[],
    webNote: string,
  ) {
    this.messages = [...o.messages];
    this.window = modelLimits(o.backend.model).context;
    this.limits = contextBudget(this.window);
    this.webAllowed = o.web ?? true;
    this.system = this.webAllowed ? o.system + webNote : o.system;
    this.out = startingOutcome(o);
  }

  /** Runs turns until the work is verified, a limit is hit, or the run fails; the outcome says which. */
  async run(): Promise<AgentOutcome> {
    try {
      for (;;) await this.turn();
    } catch (e) {
      this.end(e);
    }
    return this.out;
  }

  private async turn(): Promise<void> {
    await this.stopAtLimit();
    const reply = await this.ask();
    if (!reply) return;
    await this.take(reply);
    if (reply.stopReason === "refusal") this.refuse(reply);
    if (reply.stopReason === "pause_turn") return;
    // Cut off by the output limit, or by the context window (which also means the conversation must shrink).
    const cutOff = reply.stopReason === "max_tokens" || reply.stopReason === "model_context_window_exceeded";
    if (reply.stopReason === "model_context_window_exceeded")
      this.mark = { tokens: this.window, chars: JSON.stringify(this.messages).length };
    const calls = reply.content.filter((b): b is Anthropic.ToolUseBlockParam => b.type === "tool_use");
    if (calls.length) return this.runTools(calls, cutOff);
    if (cutOff) return this.say("Your reply was cut off at the output limit. Continue where you stopped.");
    this.out.summary = textOf(reply.content);
    await this.verifyOrFix();
  }

  private end(e: unknown): void {
    const o = this.o;
    if (e instanceof Done) {
      if (e.status) this.out.status = e.status;
      return;
    }
    if (e instanceof NeedsInput) {
      this.out.status = "needs_input";
      this.out.question = e.question;
    } else {
      this.out.status = o.ctx.signal.aborted ? "cancelled" : "error";
      if (this.out.status === "error") this.out.error = (e as Error).message;
    }
    o.record({ type: this.out.status, message: (e as Error).message });
  }

  private report(activity: string): void {
    const { out } = this;
    this.o.ctx.progress(activity);
    this.o.onTurn({ turn: out.turns, activity, usage: out.usage, costUsd: out.costUsd, modelCalls: out.modelCalls });
  }

  private spend(usage: Usage): void {
    this.out.modelCalls++;
    this.out.usage = addUsage(this.out.usage, usage);
    this.out.costUsd = costUsd(this.o.backend.model, this.out.usage);
  }

  private async save(): Promise<void> {
    await this.o.saveMessages(this.messages);
  }

  private async say(text: string): Promise<void> {
    this.messages.push({ role: "user", content: text });
    await this.save();
  }

  /** A budget or limit reached: ends the run, verified unless it was cancelled. */
  private async stopAtLimit(): Promise<void> {
    const stop = limitHit(this.out, this.o.budget, this.o.ctx.signal.aborted);
    if (!stop) return;
    if (stop !== "cancelled") await this.checkWork();
    throw new Done(stop);
  }

  private async checkWork() {
    this.report("verifying");
    this.out.verification = await this.o.verify();
    this.o.record({ type: "verification", ...this.out.verification });
    return this.out.verification;
  }

  /** Verification decides the outcome: nothing broken ends the run; what the run broke goes back, for fix rounds. */
  private async verifyOrFix(): Promise<void> {
    const verdict = await this.checkWork();
    if (verdict.outcome === "unverified") throw new Done("unverified");
    if (verdict.outcome !== "failed") throw new Done();
    if (this.out.fixRounds >= this.o.fixRounds) throw new Done("verification_failed");
    this.out.fixRounds++;
    await this.say(failureReport(verdict));
  }

  private refuse(reply: ModelReply): never {
    this.out.summary = textOf(reply.content);
    this.out.error = refusalMessage(reply);
    throw new Done("refused");
  }

  /** Adds the model's answer to the conversation (a paused turn's continuation joins the same assistant message). */
  private async take(reply: ModelReply): Promise<void> {
    const { out, messages } = this;
    out.turns++;
    this.spend(reply.usage);
    this.o.record({
      type: "response",
      turn: out.turns,
      stop_reason: reply.stopReason,
      content: reply.content,
      usage: reply.usage,
      model: reply.model,
      ...(reply.refusal && { refusal: reply.refusal }),
    });
    const last = messages.at(-1);
    if (last?.role === "assistant")
      messages[messages.length - 1] = { role: "assistant", content: [...(last.content as Block[]), ...reply.content] };
    else messages.push({ role: "assistant", content: reply.content });
    if (reply.usage.input_tokens + reply.usage.output_tokens > 0) this.mark = markOf(messages, reply.usage);
    await this.save();
  }

  /** One model call; undefined when the prompt was too long and the conversation was shrunk for a retry. */
  private async ask(): Promise<ModelReply | undefined> {
    if (estimateTokens(this.messages, this.mark) > this.limits.clearAbove)
      await this.shrink(this.limits.clearTo, this.limits.summariseAbove);
    const turn = `turn ${this.out.turns + 1}/${this.o.budget.maxTurns}`;
    this.report(`${turn} · waiting for the model`);
    this.o.record({ type: "request", turn: this.out.turns + 1, messages: this.messages.length });
    try {
      const reply = await this.o.backend.call(
        {
          system: this.system,
          tools: this.specs,
          messages: this.messages,
          maxTokens: MAX_OUTPUT_TOKENS,
          webUsesLeft: this.webUsesLeft(),
          onProgress: (note) => this.report(`${turn} · ${note}`),
        },
        this.o.ctx.signal,
      );
      this.shrinks = 0;
      return reply;
    } catch (e) {
      if (!(e instanceof PromptTooLong)) throw e;
      await this.shrinkAfterRejection(e);
      return undefined;
    }
  }

  private webUsesLeft(): number {
    const used = this.out.usage.web_search_requests + this.out.usage.web_fetch_requests;
    return this.webAllowed ? modelOptions().webMaxUses - used : 0;
  }

  /** The API measured the prompt as over the limit: shrink hard (only the newest turns verbatim) so the call is retried. */
  private async shrinkAfterRejection(e: PromptTooLong): Promise<void> {
    this.o.record({ type: "prompt_too_long", message: e.message });
    const measured = /(\d+) tokens > (\d+)/.exec(e.message);
    const ceiling = measured ? Number(measured[2]) : this.window;
    this.mark = { tokens: measured ? Number(measured[1]) : this.window, chars: JSON.stringify(this.messages).length };
    if (this.shrinks++ >= SHRINK_ATTEMPTS || !(await this.shrink(ceiling * 0.6, ceiling * 0.6, 4))) {
      throw new ApiFailure(
        `The conversation no longer fits in the model's context window (${this.window} tokens), even after clearing old tool results and summarising: ${e.message}`,
        "request",
      );
    }
    this.out.notes.push(
      "The API said the prompt was too long; old tool results were cleared and older turns summarised, and the request was retried.",
    );
  }

  /** Clears old tool results, then summarises older turns, until the conversation fits under `target` tokens. */
  private async shrink(target: number, summariseAbove: number, keepRecent?: number): Promise<boolean> {
    const before = estimateTokens(this.messages, this.mark);
    const beforeChars = JSON.stringify(this.messages).length;
    const fit = await fitConversation(this.messages, {
      backend: this.o.backend,
      contextTokens: this.window,
      mark: this.mark,
      targetTokens: target,
      summariseAbove,
      keepRecent,
      signal: this.o.ctx.signal,
    });
    if (fit.usage) this.spend(fit.usage);
    if (!fit.action) return false;
    this.messages = fit.messages;
    const afterChars = JSON.stringify(this.messages).length;
    this.mark = { tokens: Math.max(afterChars / 6, before - (beforeChars - afterChars) / 3), chars: afterChars };
    this.o.record({
      type: "context",
      action: fit.action,
      estimated_tokens_before: Math.round(before),
      context_window: this.window,
    });
    const what = fit.action === "summarised" ? "summarised older turns" : "cleared old tool results";
    this.report(`turn ${this.out.turns + 1}/${this.o.budget.maxTurns} · ${what} to stay within the context window`);
    await this.save();
    return true;
  }

  /** Runs the calls in order; a call cut off by the output limit is not run (its input is incomplete). */
  private async runTools(calls: Anthropic.ToolUseBlockParam[], cutOff: boolean): Promise<void> {
    const truncated = cutOff ? calls.at(-1) : undefined;
    const results: Block[] = [];
    for (const call of calls) {
      this.report(`turn ${this.out.turns}/${this.o.budget.maxTurns} · ${describeCall(call.name, call.input)}`);
      const started = performance.now();
      const result = call === truncated ? truncatedResult() : await this.callOne(call, results);
      this.o.record({
        type: "tool",
        turn: this.out.turns,
        name: call.name,
        input: call.input,
        isError: result.isError ?? false,
        duration_ms: Math.round((performance.now() - started) * 100) / 100,
        result: result.content,
        ...(call === truncated && { truncated: true }),
      });
      addDelegated(this.out, result, this.o.backend.model);
      results.push(toToolResult(call.id, result));
    }
    this.messages.push({ role: "user", content: results });
    await this.save();
  }

  private async callOne(call: Anthropic.ToolUseBlockParam, done: Block[]): Promise<CallResult> {
    const tool = this.o.tools.find((t) => t.name === call.name);
    if (!tool) {
      const available = this.o.tools.map((t) => t.name).join(", ");
      const text = `Tool "${call.name}" is not available to this agent. Available: ${available}.`;
      return { content: [{ type: "text", text }], isError: true };
    }
    return callTool(tool, call.input, this.o.ctx).catch(async (e: unknown) => {
      // Pausing for the user: keep the results of the calls that did run, so a resume does not repeat them.
      if (e instanceof NeedsInput && done.length) {
        this.messages.push({ role: "user", content: done });
        await this.save();
      }
      throw e;
    });
  }
}
