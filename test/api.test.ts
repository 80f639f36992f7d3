import fs from "node:fs/promises";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CreateMessageRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, test } from "vitest";
import { explainApiError, PromptTooLong } from "../src/task/api-errors.js";
import { SUMMARY_HEADING } from "../src/task/context.js";
import { demoWorkspace } from "../src/testing/demo.js";
import { MODEL_ALIASES } from "../src/task/model.js";
import { customHeaders, providerModelId } from "../src/task/anthropic.js";
import { thinkingParams } from "../src/task/model-options.js";
import { costUsd, emptyUsage, modelLimits } from "../src/task/pricing.js";
import type { TaskReport } from "../src/task/runs.js";
import {
  apiError,
  reply,
  say,
  ScriptedModel,
  think,
  use,
  type Block,
  type MessagesRequest,
  type Step,
} from "../src/testing/scripted-model.js";
import { connect, text, type Connection } from "./helpers.js";

/** The agent loop against everything the Messages API answers: the scripted API over real HTTP, streamed (SSE). */

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});

async function withModel(steps: Step[], o: { args?: string[]; env?: Record<string, string> } = {}) {
  const model = new ScriptedModel(steps);
  const url = await model.start();
  const ws = await demoWorkspace();
  const env = {
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_AUTH_TOKEN: "",
    ANTHROPIC_BASE_URL: url,
    BACKEND_AGENT_MAX_RETRIES: "2",
    BACKEND_AGENT_MODEL: "",
    CLAUDE_CODE_USE_BEDROCK: "",
    CLAUDE_CODE_USE_VERTEX: "",
    ANTHROPIC_CUSTOM_HEADERS: "",
    ...o.env,
  };
  const conn = await connect(["--workspace", ws, ...(o.args ?? [])], { env });
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
    () => fs.rm(ws, { recursive: true, force: true }),
  );
  return { model, ws, conn };
}

const task = async (conn: Connection, args: Record<string, unknown> = {}) => {
  const progress: string[] = [];
  const r = (await conn.client.callTool(
    { name: "Task", arguments: { description: "api test", prompt: "Do the task.", ...args } },
    undefined,
    { onprogress: (p) => progress.push(p.message ?? "") },
  )) as CallToolResult;
  return { r, rep: r.structuredContent as unknown as TaskReport, progress };
};
type Content = { type: string; [k: string]: unknown }[];
const blocksOf = (req: MessagesRequest, i: number) => req.messages.at(i)!.content as Content;

describe("API answers end in an honest state", () => {
  test("a refusal is not completed: the report says the model refused and shows its words", async () => {
    const words = "I can't help build a tool that harvests other people's credentials.";
    const { model, conn } = await withModel([
      {
        content: [say(words)],
        stop_reason: "refusal",
        stop_details: { type: "refusal", category: "cyber", explanation: "Could enable credential theft." },
      },
    ]);
    const { r, rep } = await task(conn);
    expect(rep.status).toBe("refused");
    expect(rep.summary).toBe(words);
    expect(rep.error).toContain("category: cyber");
    expect(rep.verification).toBeNull();
    expect(text(r)).toContain("[refused] NOT completed: the model refused");
    expect(text(r)).toContain(words);
    expect(model.requests).toHaveLength(1);
  });

  test("401 stops at once (no retries) and names ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN", async () => {
    const { model, conn } = await withModel([
      apiError(401, "authentication_error", "invalid x-api-key"),
      reply(say("never sent")),
    ]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("error");
    expect(model.requests).toHaveLength(1);
    expect(rep.error).toContain("invalid x-api-key");
    expect(rep.error).toContain("ANTHROPIC_API_KEY");
    expect(rep.error).toContain("ANTHROPIC_AUTH_TOKEN");
  });

  test("403 likewise stops at once and says which credentials to check", async () => {
    const { model, conn } = await withModel([
      apiError(403, "permission_error", "Your API key does not have permission to use the specified resource."),
    ]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("error");
    expect(model.requests).toHaveLength(1);
    expect(rep.error).toContain(
      "refused this request for these credentials (403 permission_error: Your API key does not have permission",
    );
    expect(rep.error).toContain("ANTHROPIC_API_KEY");
  });

  test("404 names the model, the accepted aliases and how to choose another", async () => {
    const { model, conn } = await withModel([apiError(404, "not_found_error", "model: claude-nonesuch-9")]);
    const { rep } = await task(conn, { model: "claude-nonesuch-9" });
    expect(rep.status).toBe("error");
    expect(model.requests).toHaveLength(1);
    expect(model.requests[0]!.model).toBe("claude-nonesuch-9");
    expect(rep.error).toContain('The model "claude-nonesuch-9" was not found');
    expect(rep.error).toContain("sonnet (claude-sonnet-5-5)");
    expect(rep.error).toContain("model parameter");
    expect(rep.error).toContain("BACKEND_AGENT_MODEL");
  });

  test("another 400 is reported with the API's words, verbatim", async () => {
    const words = "messages.1.content.0: unexpected `tool_use_id` found in `tool_result` blocks";
    const { model, conn } = await withModel([apiError(400, "invalid_request_error", words)]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("error");
    expect(model.requests).toHaveLength(1);
    expect(rep.error).toBe(`The Anthropic API rejected the request (400 invalid_request_error): ${words}`);
  });

  test("529 then success: the SDK retries after the time retry-after asks for", async () => {
    const { model, conn } = await withModel([
      apiError(529, "overloaded_error", "Overloaded", { "retry-after-ms": "400" }),
      reply(say("Done.")),
    ]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("completed");
    expect(model.requests).toHaveLength(2);
    expect(model.times[1]! - model.times[0]!).toBeGreaterThanOrEqual(400);
  });
});

describe("answers that break off mid-stream", () => {
  const broken: Step = { content: [say("Starting on it.")], failMidStream: "overloaded_error" };

  test("an SSE error event is retried, and the run goes on", async () => {
    const { model, conn } = await withModel([broken, reply(say("Done."))]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("completed");
    expect(model.requests).toHaveLength(2);
    expect(rep.model_calls).toBe(1);
  });

  test("when every try breaks off, the report says the retries ran out", async () => {
    const { model, conn } = await withModel([broken, broken, broken]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("error");
    expect(model.requests).toHaveLength(3);
    expect(rep.error).toContain("broke off its answer (overloaded_error: Overloaded)");
    expect(rep.error).toContain("on each of 3 tries; retries ran out");
  });
});

describe("context", () => {
  const bigOutput = `node -e "for (let i = 0; i < 250; i++) console.log('x'.repeat(99))"`;

  test("'prompt is too long' shrinks the conversation and retries instead of ending", async () => {
    const LIMIT = 100_000;
    const tooLongOr =
      (then: Step): Step =>
      (req) =>
        JSON.stringify(req).length > LIMIT
          ? apiError(400, "invalid_request_error", "prompt is too long: 52000 tokens > 50000 maximum")
          : then;
    const { model, conn } = await withModel([
      ...Array.from({ length: 5 }, () => reply(use("Run", { command: bigOutput }))),
      tooLongOr(reply(say("Done."))),
      tooLongOr(reply(say("Done."))),
    ]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("completed");
    const [tooLong, retried] = model.requests.slice(5);
    expect(JSON.stringify(tooLong).length).toBeGreaterThan(LIMIT);
    expect(JSON.stringify(retried).length).toBeLessThan(LIMIT);
    expect(JSON.stringify(retried)).toContain("Earlier tool result cleared");
    expect(rep.notes.join("\n")).toContain("prompt was too long");
  });

  test("near the context window, older turns are summarised by the model and the task goes on", async () => {
    const glob = () => reply(use("Glob", { pattern: "*.md" }));
    const huge: Step = {
      content: [use("Glob", { pattern: "*.json" })],
      stop_reason: "tool_use",
      usage: { input_tokens: 900_000, output_tokens: 50 },
    };
    const { model, conn } = await withModel([
      ...Array.from({ length: 6 }, glob),
      huge,
      reply(say("Globbed README.md and package.json; nothing else.")),
      reply(say("Done.")),
    ]);
    const { rep } = await task(conn);
    expect(rep.status).toBe("completed");
    const summariser = model.requests[7]!;
    expect(summariser.system![0]!.text).toMatch(/^You condense the history/);
    expect(summariser.tools).toEqual([]);
    const next = model.requests[8]!;
    expect(next.messages.length).toBeLessThan(model.requests[6]!.messages.length);
    expect(JSON.stringify(next.messages[0])).toContain(SUMMARY_HEADING);
    expect(JSON.stringify(next.messages[0])).toContain("Do the task.");
    expect(next.messages[1]!.role).toBe("assistant");
  });

  test("a streamed answer cut by max_tokens mid tool call: the call is not run, the model is told and goes on", async () => {
    const cut: Block = {
      type: "tool_use",
      id: "toolu_cut",
      name: "Write",
      input: {},
      partialJson: '{"file_path": "big.js", "content": "export const a = 1;\\nexport const b',
    };
    const { ws, model, conn } = await withModel([
      {
        content: [say(`Writing the module now. ${"It has many parts. ".repeat(60)}`), cut],
        stop_reason: "max_tokens",
        chunkDelayMs: 60,
      },
      reply(say("Done.")),
    ]);
    const { rep, progress } = await task(conn);
    expect(rep.status).toBe("completed");
    await expect(fs.access(path.join(ws, "big.js"))).rejects.toThrow();
    const result = blocksOf(model.requests[1]!, -1)[0]! as {
      type: string;
      tool_use_id: string;
      is_error: boolean;
      content: { text: string }[];
    };
    expect(result).toMatchObject({ type: "tool_result", tool_use_id: "toolu_cut", is_error: true });
    expect(result.content[0]!.text).toContain("NOT run");
    expect(progress.some((p) => /the model is writing \(~\d+ tokens so far\)/.test(p))).toBe(true);
    expect(model.requests[0]!.stream).toBe(true);
  });
});

describe("thinking", () => {
  test("on by default; thinking and redacted thinking go back exactly as received; thinking tokens are counted", async () => {
    const thought = think("The user wants a listing first; Glob before writing anything.");
    const redacted: Block = {
      type: "redacted_thinking",
      data: "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj2pWmbTQ==",
    };
    const { model, conn } = await withModel([
      {
        content: [thought, redacted, use("Glob", { pattern: "*" })],
        stop_reason: "tool_use",
        usage: { input_tokens: 100, output_tokens: 300, output_tokens_details: { thinking_tokens: 250 } },
      },
      {
        content: [say("Done.")],
        stop_reason: "end_turn",
        usage: { input_tokens: 120, output_tokens: 20, output_tokens_details: { thinking_tokens: 0 } },
      },
    ]);
    const { r, rep } = await task(conn);
    expect(rep.status).toBe("completed");
    expect(model.requests[0]!.thinking).toEqual({ type: "adaptive" });
    const sentBack = blocksOf(model.requests[1]!, 1);
    expect(sentBack[0]).toEqual(thought);
    expect(sentBack[1]).toEqual(redacted);
    expect(rep.usage.thinking_tokens).toBe(250);
    expect(rep.usage.output_tokens).toBe(320);
    expect(text(r)).toContain("thinking 250 of the output");
  });

  test("--thinking off: disabled where the model allows it, the lowest setting (and a note) where it does not", async () => {
    const { model, conn } = await withModel([reply(say("Done.")), reply(say("Done."))], {
      args: ["--thinking", "off"],
    });
    const sonnet = await task(conn);
    await task(conn, { model: "haiku" });
    expect(model.requests[0]!.thinking).toEqual({ type: "between_tools" });
    expect(sonnet.rep.notes.join("\n")).toContain("cannot turn thinking off");
    expect(model.requests[1]!.model).toBe("claude-haiku-5-5");
    expect(model.requests[1]!.thinking).toEqual({ type: "disabled" });
  });

  test("--thinking with an effort sets output_config.effort", async () => {
    const { model, conn } = await withModel([reply(say("Done."))], { args: ["--thinking", "low"] });
    await task(conn);
    expect(model.requests[0]!.thinking).toEqual({ type: "adaptive" });
    expect(model.requests[0]!.output_config).toEqual({ effort: "low" });
  });
});

describe("web search and fetch", () => {
  const search: Block = {
    type: "server_tool_use",
    id: "srvtoolu_1",
    name: "web_search",
    input: { query: "express 5 migration guide" },
  };
  const results: Block = {
    type: "web_search_tool_result",
    tool_use_id: "srvtoolu_1",
    content: [
      {
        type: "web_search_result",
        url: "https://docs.example.com/migrate",
        title: "Migrating",
        encrypted_content: "abc",
        page_age: null,
      },
    ],
  };

  test("offered with the per-run cap and allowed domains; a paused turn is sent back as it is; searches are priced", async () => {
    const webUse = { web_search_requests: 1, web_fetch_requests: 0 };
    const { model, conn } = await withModel(
      [
        {
          content: [search, results],
          stop_reason: "pause_turn",
          usage: { input_tokens: 100, output_tokens: 30, server_tool_use: webUse },
        },
        {
          content: [say("Express 5 drops app.del; nothing here uses it.")],
          stop_reason: "end_turn",
          usage: { input_tokens: 200, output_tokens: 30, server_tool_use: webUse },
        },
      ],
      { args: ["--web-domain", "docs.example.com", "--web-max-uses", "3"] },
    );
    const { r, rep } = await task(conn);
    expect(rep.status).toBe("completed");
    const [first, second] = model.requests;
    expect(first!.tools!.find((t) => t.name === "web_search")).toMatchObject({
      type: "web_search_20260209",
      max_uses: 3,
      allowed_domains: ["docs.example.com"],
    });
    expect(first!.tools!.find((t) => t.name === "web_fetch")).toMatchObject({
      type: "web_fetch_20260209",
      max_uses: 3,
    });
    expect(first!.system![0]!.text).toContain("web_search and web_fetch");
    // The paused turn goes back unchanged, as the last message, and the cap counts the search already made.
    expect(second!.messages.at(-1)).toEqual({ role: "assistant", content: [search, results] });
    expect(second!.tools!.find((t) => t.name === "web_search")!.max_uses).toBe(2);
    expect(rep.usage.web_search_requests).toBe(2);
    expect(rep.cost_usd).toBeCloseTo(
      costUsd("claude-sonnet-5-5", { ...emptyUsage(), input_tokens: 300, output_tokens: 60 }) + 0.02,
      6,
    );
    expect(text(r)).toContain("web searches 2");
  });

  test("--web off: no web tools, and the agent is told", async () => {
    const { model, conn } = await withModel([reply(say("Done."))], { args: ["--web", "off"] });
    await task(conn);
    expect(model.requests[0]!.tools!.some((t) => t.name.startsWith("web_"))).toBe(false);
    expect(model.requests[0]!.system![0]!.text).toContain(
      "No web search or fetch in this run (the server runs with --web off)",
    );
  });
});

describe("MCP sampling", () => {
  test("no web tools are offered, and the agent is told why", async () => {
    const ws = await demoWorkspace();
    const client = new Client(
      { name: "sampling-client", version: "1.0.0" },
      { capabilities: { sampling: { tools: {} } } },
    );
    const seen: { systemPrompt?: string; tools?: { name: string }[] }[] = [];
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      seen.push(req.params as (typeof seen)[number]);
      return {
        model: "client-model",
        role: "assistant",
        stopReason: "endTurn",
        content: { type: "text", text: "Nothing to do." },
      };
    });
    const conn = await connect(["--workspace", ws], {
      env: { ANTHROPIC_API_KEY: "", ANTHROPIC_AUTH_TOKEN: "", CLAUDE_CODE_USE_BEDROCK: "", CLAUDE_CODE_USE_VERTEX: "" },
      client,
    });
    cleanup.push(
      () => conn.close(),
      () => fs.rm(ws, { recursive: true, force: true }),
    );
    const { rep } = await task(conn);
    expect(rep.status).toBe("completed");
    expect(seen[0]!.tools!.some((t) => t.name.startsWith("web_"))).toBe(false);
    expect(seen[0]!.systemPrompt).toContain(
      "No web search or fetch in this run (the model is reached through the client's MCP sampling",
    );
  });
});

describe("endpoints", () => {
  test("ANTHROPIC_AUTH_TOKEN alone is sent as a bearer token, with the gateway's custom headers", async () => {
    const { model, conn } = await withModel([reply(say("Done."))], {
      env: {
        ANTHROPIC_API_KEY: "",
        ANTHROPIC_AUTH_TOKEN: "gateway-token-1",
        ANTHROPIC_CUSTOM_HEADERS: "X-Gateway-Tenant: acme\nX-Trace: on",
      },
    });
    const { rep } = await task(conn);
    expect(rep.status).toBe("completed");
    expect(model.headers[0]!.authorization).toBe("Bearer gateway-token-1");
    expect(model.headers[0]!["x-api-key"]).toBeUndefined();
    expect(model.headers[0]!["x-gateway-tenant"]).toBe("acme");
    expect(model.headers[0]!["x-trace"]).toBe("on");
  });

  test("the API key is sent when it is set", async () => {
    const { model, conn } = await withModel([reply(say("Done."))]);
    await task(conn);
    expect(JSON.stringify(model.headers[0])).toContain("test-key");
  });
});

describe("model tables and helpers", () => {
  test("aliases map to Bedrock ids; full ids pass unchanged", () => {
    expect(providerModelId("claude-sonnet-5-5", "bedrock")).toBe("anthropic.claude-sonnet-5-5");
    expect(providerModelId("global.anthropic.claude-opus-5-5", "bedrock")).toBe("global.anthropic.claude-opus-5-5");
    expect(providerModelId("claude-sonnet-5-5", "vertex")).toBe("claude-sonnet-5-5");
    expect(modelLimits("us.anthropic.claude-haiku-4-5-20251001-v1:0")).toEqual({
      context: 200_000,
      max_output: 64_000,
      thinking: "budget",
    });
    expect(Object.values(MODEL_ALIASES).every((id) => modelLimits(id).context === 1_000_000)).toBe(true);
  });

  test("thinking parameters follow what each model accepts", () => {
    expect(thinkingParams(modelLimits("claude-opus-5-5"), "off", 32_000)).toMatchObject({
      params: { output_config: { effort: "low" } },
      note: expect.stringContaining("always thinks"),
    });
    expect(thinkingParams(modelLimits("claude-sonnet-4-5"), "high", 32_000).params).toEqual({
      thinking: { type: "enabled", budget_tokens: 16_000 },
    });
    expect(thinkingParams(modelLimits("claude-sonnet-4-5"), "off", 32_000).params).toEqual({
      thinking: { type: "disabled" },
    });
  });

  test("custom headers parse as Claude Code writes them", () => {
    expect(customHeaders("X-A: 1\r\nbad line\nX-B:  two words ")).toEqual({ "X-A": "1", "X-B": "two words" });
  });

  test("an over-long prompt is its own error; connection failures say retries ran out", () => {
    const c = { model: "m", provider: "anthropic" as const, aliases: MODEL_ALIASES, retries: 4 };
    expect(() =>
      explainApiError(
        { status: 400, apiMessage: "prompt is too long: 210000 tokens > 200000 maximum", message: "" },
        c,
      ),
    ).toThrow(PromptTooLong);
    expect(explainApiError({ message: "Connection error." }, c).message).toContain("after 4 retries");
    expect(
      explainApiError(
        { status: 403, type: "permission_error", apiMessage: "no access", message: "" },
        { ...c, provider: "bedrock" },
      ).message,
    ).toContain("AWS_REGION");
  });
});
