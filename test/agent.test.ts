import { describe, expect, test } from "vitest";
import { compactConversation, continueConversation } from "../src/agent.js";
import type { Message } from "../src/model.js";

const toolTurn = (i: number, size: number): Message[] => [
  { role: "assistant", content: [{ type: "tool_use", id: `t${i}`, name: "Read", input: { file_path: `f${i}.ts` } }] },
  { role: "user", content: [{ type: "tool_result", tool_use_id: `t${i}`, content: [{ type: "text", text: "x".repeat(size) }] }] },
];

describe("compactConversation", () => {
  test("a conversation within the limit is left as it is", () => {
    const messages: Message[] = [{ role: "user", content: "Do it." }, ...toolTurn(1, 1000)];
    expect(compactConversation(messages, 10_000)).toBe(messages);
  });

  test("old tool results are cleared, oldest first, until it fits; recent turns and the task stay", () => {
    const messages: Message[] = [{ role: "user", content: "Do it." }, ...Array.from({ length: 10 }, (_, i) => toolTurn(i, 50_000)).flat()];
    const compacted = compactConversation(messages, 300_000);
    expect(JSON.stringify(compacted).length).toBeLessThanOrEqual(300_000);
    expect(compacted[0]).toEqual({ role: "user", content: "Do it." });
    const results = compacted.filter((m) => m.role === "user" && Array.isArray(m.content)).map((m) => (m.content as { content: unknown }[])[0]!.content);
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
      { role: "assistant", content: [{ type: "tool_use", id: "a", name: "Run", input: {} }, { type: "tool_use", id: "q", name: "AskUserQuestion", input: { question: "Which DB?" } }] },
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
    const saved: Message[] = [{ role: "user", content: "Build it." }, { role: "assistant", content: [{ type: "text", text: "Done." }] }];
    expect(continueConversation(saved, "Also add tests.").at(-1)).toEqual({ role: "user", content: [{ type: "text", text: "Also add tests." }] });
  });
});
