import { describe, expect, test } from "vitest";
import { compactConversation, continueConversation, toolSpec } from "../src/task/agent.js";
import { estimateTokens, fitConversation, markOf } from "../src/task/context.js";
import { remainingBudget } from "../src/task/delegation.js";
import type { Message, ModelBackend } from "../src/task/model.js";
import { emptyUsage } from "../src/task/pricing.js";
import grep from "../src/tools/grep.js";

const toolTurn = (i: number, size: number): Message[] => [
  { role: "assistant", content: [{ type: "tool_use", id: `t${i}`, name: "Read", input: { file_path: `f${i}.ts` } }] },
  {
    role: "user",
    content: [{ type: "tool_result", tool_use_id: `t${i}`, content: [{ type: "text", text: "x".repeat(size) }] }],
  },
];

describe("compactConversation", () => {
  test("a conversation within the limit is left as it is", () => {
    const messages: Message[] = [{ role: "user", content: "Do it." }, ...toolTurn(1, 1000)];
    expect(compactConversation(messages, 10_000)).toBe(messages);
  });

  test("old tool results are cleared, oldest first, until it fits; recent turns and the task stay", () => {
    const messages: Message[] = [
      { role: "user", content: "Do it." },
      ...Array.from({ length: 10 }, (_, i) => toolTurn(i, 50_000)).flat(),
    ];
    const compacted = compactConversation(messages, 300_000);
    expect(JSON.stringify(compacted).length).toBeLessThanOrEqual(300_000);
    expect(compacted[0]).toEqual({ role: "user", content: "Do it." });
    const results = compacted
      .filter((m) => m.role === "user" && Array.isArray(m.content))
      .map((m) => (m.content as { content: unknown }[])[0]!.content);
    expect(typeof results[0]).toBe("string");
    expect(results[0]).toMatch(/^\[Earlier tool result cleared/);
    expect(results.at(-1)).toEqual([{ type: "text", text: "x".repeat(50_000) }]);
    expect(compacted.map((m) => m.role)).toEqual(messages.map((m) => m.role));
    expect(messages[2]!.content).not.toBe(compacted[2]!.content);
  });
});

describe("continueConversation", () => {
  test("a pending question gets the answer as its result, other pending calls are marked not run", () => {
    const saved: Message[] = [
      { role: "user", content: "Build it." },
      {
        role: "assistant",
        content: [
          { type: "tool_use", id: "a", name: "Run", input: {} },
          { type: "tool_use", id: "q", name: "AskUserQuestion", input: { question: "Which DB?" } },
        ],
      },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "a", content: "ran" }] },
    ];
    const next = continueConversation(saved, "Postgres");
    expect(next).toHaveLength(3);
    expect(next[2]).toEqual({
      role: "user",
      content: [
        { type: "tool_result", tool_use_id: "a", content: "ran" },
        { type: "tool_result", tool_use_id: "q", content: "The user answered: Postgres" },
        { type: "text", text: "Postgres" },
      ],
    });
  });

  test("after a finished turn the follow-up is a new user message", () => {
    const saved: Message[] = [
      { role: "user", content: "Build it." },
      { role: "assistant", content: [{ type: "text", text: "Done." }] },
    ];
    expect(continueConversation(saved, "Also add tests.").at(-1)).toEqual({
      role: "user",
      content: [{ type: "text", text: "Also add tests." }],
    });
  });
});

describe("context estimate", () => {
  test("the conversation's size in characters is its JSON's length, as the conversation grows", () => {
    const messages: Message[] = [];
    expect(markOf(messages, emptyUsage()).chars).toBe(JSON.stringify(messages).length);
    messages.push({ role: "user", content: 'Do it — ünïcode and "quotes".' });
    for (let i = 0; i < 3; i++) {
      messages.push(...toolTurn(i, 100 * i));
      expect(markOf(messages, emptyUsage()).chars).toBe(JSON.stringify(messages).length);
    }
  });

  const usage = { ...emptyUsage(), input_tokens: 1_000, cache_read_input_tokens: 40_000, output_tokens: 500 };

  test("the size is the API's own count at the last answer plus an estimate for what came after", () => {
    const messages: Message[] = [{ role: "user", content: "Do it." }, ...toolTurn(1, 3_000)];
    const mark = markOf(messages, usage);
    expect(mark.tokens).toBe(41_500);
    expect(estimateTokens(messages, mark)).toBe(41_500);
    expect(estimateTokens([...messages, ...toolTurn(2, 30_000)], mark)).toBeGreaterThan(41_500 + 10_000);
  });

  test("clearing old tool results is enough when it brings the estimate under the target: no model call", async () => {
    const messages: Message[] = [
      { role: "user", content: "Do it." },
      ...Array.from({ length: 10 }, (_, i) => toolTurn(i, 30_000)).flat(),
    ];
    const backend = { call: () => Promise.reject(new Error("no model call expected")) } as unknown as ModelBackend;
    const mark = { tokens: 150_000, chars: JSON.stringify(messages).length };
    const fit = await fitConversation(messages, {
      backend,
      contextTokens: 200_000,
      mark,
      targetTokens: 70_000,
      summariseAbove: 140_000,
      signal: new AbortController().signal,
    });
    expect(fit.action).toBe("cleared");
    // Six of the ten results were cleared (the newest eight messages stay verbatim): about 60,000 tokens fewer.
    expect(JSON.stringify(fit.messages).length).toBeLessThan(JSON.stringify(messages).length - 150_000);
    expect(JSON.stringify(fit.messages.slice(-8))).toBe(JSON.stringify(messages.slice(-8)));
    expect(fit.messages).toHaveLength(messages.length);
  });
});

describe("delegation budget", () => {
  test("a partner gets what is left of the parent's turns, tokens and dollars", () => {
    const spent = {
      usage: { ...emptyUsage(), input_tokens: 1_000, output_tokens: 500, cache_read_input_tokens: 9_000 },
      costUsd: 0.4,
      turns: 7,
    };
    expect(remainingBudget({ maxTurns: 40, maxTokens: 100_000, maxCostUsd: 1, deadline: 123 }, spent)).toEqual({
      maxTurns: 33,
      maxTokens: 98_500,
      maxCostUsd: 0.6,
      deadline: 123,
    });
  });
});

describe("tool definitions sent to the model", () => {
  test("leave out $schema and the safe-integer bounds zod adds, and keep everything else", () => {
    const spec = toolSpec(grep);
    const json = JSON.stringify(spec);
    expect(json).not.toContain("$schema");
    expect(json).not.toContain(String(Number.MAX_SAFE_INTEGER));
    const props = spec.input_schema.properties as Record<string, Record<string, unknown>>;
    expect(props.head_limit).toEqual({ description: expect.any(String), type: "integer", minimum: 1 });
    expect(props["-A"]).toMatchObject({ minimum: 0, maximum: 100 });
    expect(spec.input_schema.required).toEqual(["pattern"]);
  });
});
