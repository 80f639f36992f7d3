import { z } from "zod";
import { type AgentOutcome, type Budget, freshTokens, runAgent } from "./agent.js";
import type { ChildRun } from "./records.js";
import type { ModelBackend, Usage } from "./model.js";
import { emptyUsage } from "./pricing.js";
import type { Agent } from "../prompts.js";
import type { Tool, ToolContext, ToolOutput } from "../server/tool.js";
import type { Verification } from "./verify/index.js";
import { ToolError } from "../server/errors.js";

/**
 * Delegation: the sub-agent's own Task tool, which hands part of its work to a partner agent (one from prompts/agents/
 * or the workspace's .claude/agents/). The partner works in the same workspace and checkpoint with its own system
 * prompt and tools, shares what is left of the parent's turn, token and dollar budgets, cannot delegate further
 * (depth 1), and is verified by the parent's final verification.
 */

/** One delegated piece of work, as the parent's report lists it (the shape is records.ts's childRunSchema). */
export type { ChildRun } from "./records.js";

/** What a delegation spent, carried in the tool result so the parent adds it to its own totals. */
export interface Spent {
  usage: Usage;
  modelCalls: number;
  turns: number;
  costUsd: number;
}

export interface DelegationOptions {
  /** Agents by name; the parent itself is left out. */
  agents: Map<string, Agent>;
  parent: string;
  /** Tools a partner may be given (never Task: delegation is one level deep). */
  tools: Tool[];
  backend: ModelBackend;
  /** The parent's budget and what it has spent so far, read when a delegation starts. */
  budget: () => { total: Budget; spent: { usage: Usage; costUsd: number; turns: number } };
  record: (event: Record<string, unknown>) => void;
  /** Records the finished delegation as a run of its own, linked to the parent; returns its run id. */
  onChild?: (run: ChildRun) => Promise<string>;
}

/** Whether an agent may delegate: its tools list names Task, or it has no tools list. */
export const mayDelegate = (agent: Agent) => !agent.tools || agent.tools.includes("Task");

/** What is left of a budget after `spent`. */
export function remainingBudget(total: Budget, spent: { usage: Usage; costUsd: number; turns: number }): Budget {
  return {
    maxTurns: total.maxTurns - spent.turns,
    maxTokens: total.maxTokens - freshTokens(spent.usage),
    ...(total.maxCostUsd !== undefined && { maxCostUsd: total.maxCostUsd - spent.costUsd }),
    deadline: total.deadline,
  };
}

const PARTNER_NOTE =
  "\n\n## Working for another agent\nAnother agent handed you this part of its task. It sees only your final answer: end with what you changed (paths), " +
  "what you checked and how, and anything left open. Its own checks of the workspace run after it finishes.";

/** An agent's description up to its first full stop: enough to choose a partner, short enough to send every turn. */
const firstSentence = (text: string) => /^[^\n]*?[.!?](?=\s|$)/.exec(text)?.[0] ?? text.split("\n")[0]!;

function describe(o: DelegationOptions): string {
  const list = [...o.agents.values()].map((a) => `- ${a.name}: ${firstSentence(a.description)}`).join("\n");
  return (
    "Hands a well-defined part of your task to a partner agent (same workspace, its own role and tools) and returns its summary. " +
    "Use it for work that needs a partner's expertise; do the rest yourself. " +
    "The partner sees only your prompt. " +
    "It shares your turn, token and cost budgets, cannot delegate further, and its changes are checked with yours at the end.\n\nPartners:\n" +
    list
  );
}

/** The sub-agent's Task tool; undefined when there is no partner to hand work to. */
export function createDelegateTool(o: DelegationOptions): Tool | undefined {
  const partners = new Map([...o.agents].filter(([name]) => name !== o.parent));
  if (!partners.size) return undefined;
  const opts = { ...o, agents: partners };
  let count = 0;
  const input = z.object({
    description: z.string().min(1).max(120).describe("A short (3-5 word) label for the delegated work"),
    prompt: z
      .string()
      .min(1)
      .describe("Everything the partner needs: the goal, constraints, files involved and how to know it is done"),
    subagent_type: z.string().min(1).describe("The partner agent, by name (see Partners)"),
  });
  return {
    name: "Task",
    title: "Hand work to a partner agent",
    description: describe(opts),
    input,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    async handle(args: z.infer<typeof input>, ctx: ToolContext) {
      const agent = partners.get(args.subagent_type);
      if (!agent)
        throw new ToolError(`Unknown partner "${args.subagent_type}". Partners: ${[...partners.keys()].join(", ")}.`);
      return delegate(o, agent, args, ctx, ++count);
    },
  } as unknown as Tool;
}

/** One delegation: the partner's own loop within what is left of the parent's budgets; its result for the parent. */
async function delegate(
  o: DelegationOptions,
  agent: Agent,
  args: { description: string; prompt: string },
  ctx: ToolContext,
  child: number,
): Promise<ToolOutput> {
  const { total, spent } = o.budget();
  const budget = remainingBudget(total, spent);
  if (budget.maxTurns < 1 || budget.maxTokens <= 0 || (budget.maxCostUsd !== undefined && budget.maxCostUsd <= 0)) {
    throw new ToolError("Not enough budget left to delegate: finish the work yourself and report.");
  }
  const record = (event: Record<string, unknown>) => o.record({ ...event, child, child_agent: agent.name });
  record({ type: "delegate", description: args.description, prompt: args.prompt });
  const outcome = await runAgent({
    backend: o.backend,
    system: agent.systemPrompt + PARTNER_NOTE,
    tools: o.tools.filter((t) => t.name !== "Task" && (!agent.tools || agent.tools.includes(t.name))),
    web: !agent.tools || agent.tools.some((t) => t === "WebSearch" || t === "WebFetch"),
    ctx: { ...ctx, progress: (m) => ctx.progress(`${agent.name}: ${m}`) },
    messages: [{ role: "user", content: args.prompt }],
    budget,
    spent: { usage: emptyUsage(), modelCalls: 0, turns: 0 },
    fixRounds: 0,
    verify: async () => PARENT_CHECKS,
    record,
    saveMessages: async () => undefined,
    onTurn: () => undefined,
  });
  const run: ChildRun = {
    agent: agent.name,
    description: args.description,
    status: outcome.status,
    summary: outcome.summary,
    cost_usd: outcome.costUsd,
    turns: outcome.turns,
    model_calls: outcome.modelCalls,
    usage: outcome.usage,
    ...(outcome.error && { error: outcome.error }),
  };
  const childId = await o
    .onChild?.(run)
    .catch((e: Error) => void record({ type: "child_record_failed", message: e.message }));
  if (childId) run.run_id = childId;
  record({ type: "delegated", ...run });
  const used: Spent = {
    usage: outcome.usage,
    modelCalls: outcome.modelCalls,
    turns: outcome.turns,
    costUsd: outcome.costUsd,
  };
  return { text: delegationText(agent.name, outcome), structured: { delegated: run, spent: used } };
}

/** A partner's work is checked by the parent run's final verification, not its own. */
const PARENT_CHECKS: Verification = {
  outcome: "passed",
  passed: true,
  checks: [],
  note: "Checked by the parent run's final verification.",
  duration_ms: 0,
};

function delegationText(name: string, outcome: AgentOutcome): string {
  const head = `${name} ended ${outcome.status} after ${outcome.turns} turns ($${outcome.costUsd.toFixed(4)}).${outcome.error ? ` ${outcome.error}` : ""}`;
  const q = outcome.question;
  const question = q
    ? `\n\nIt stopped to ask: ${q.question}${q.options ? ` (options: ${q.options.join(" | ")})` : ""}. Decide it yourself, or ask the user with AskUserQuestion.`
    : "";
  return `${head}\n\nIts summary:\n${outcome.summary || "(none)"}${question}`;
}
