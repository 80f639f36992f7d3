import fs from "node:fs/promises";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, test } from "vitest";
import { demoWorkspace } from "../src/testing/demo.js";
import type { TaskReport } from "../src/task/runs.js";
import { reply, say, ScriptedModel, use, type MessagesRequest, type Step } from "../src/testing/scripted-model.js";
import { connect, text } from "./helpers.js";

/** The sub-agent hands part of its work to a partner agent with its own Task tool (depth 1, shared budgets). */

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});

async function withPartner(steps: Step[]) {
  const ws = await demoWorkspace();
  await fs.mkdir(path.join(ws, ".claude", "agents"), { recursive: true });
  await fs.writeFile(
    path.join(ws, ".claude", "agents", "doc-writer.md"),
    "---\nname: doc-writer\ndescription: Writes API documentation\ntools: Read, Write\n---\nYou write API documentation.\n",
  );
  const model = new ScriptedModel(steps);
  const url = await model.start();
  const conn = await connect(["--workspace", ws], {
    env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_AUTH_TOKEN: "", ANTHROPIC_BASE_URL: url, BACKEND_AGENT_MODEL: "" },
  });
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
    () => fs.rm(ws, { recursive: true, force: true }),
  );
  return { ws, model, conn };
}

const toolNames = (req: MessagesRequest) => req.tools!.map((t) => t.name);
const resultText = (req: MessagesRequest) => JSON.stringify(req.messages.at(-1)!.content);

describe("delegation to a partner agent", () => {
  test("the partner's own prompt and tools are used, its files land, and its summary reaches the parent and the report", async () => {
    const { ws, model, conn } = await withPartner([
      reply(
        use("Task", {
          description: "document the API",
          prompt: "Write docs/API.md describing GET /users.",
          subagent_type: "doc-writer",
        }),
      ),
      reply(use("Write", { file_path: "docs/API.md", content: "# API\n\n## GET /users\nLists users.\n" })),
      reply(say("Wrote docs/API.md with GET /users.")),
      reply(say("Done: the docs were written by doc-writer.")),
    ]);
    const r = (await conn.client.callTool({
      name: "Task",
      arguments: { description: "users docs", prompt: "Document the API." },
    })) as CallToolResult;
    const rep = r.structuredContent as unknown as TaskReport;
    expect(rep.status).toBe("completed");
    const [parent, child, childAgain, parentAgain] = model.requests;
    // The parent (backend-developer) has Task; the partner has only its own tools and no Task (depth 1).
    expect(toolNames(parent!)).toContain("Task");
    expect(parent!.tools!.find((t) => t.name === "Task")).toBeDefined();
    expect(toolNames(child!)).toEqual(["Read", "Write"]);
    expect(child!.system![0]!.text).toMatch(/^You write API documentation\./);
    expect(child!.messages[0]).toMatchObject({ role: "user" });
    expect(JSON.stringify(child!.messages[0])).toContain("Write docs/API.md describing GET /users.");
    expect(toolNames(childAgain!)).toEqual(["Read", "Write"]);
    // The file landed in the same workspace, and the server's final checks covered it.
    expect(await fs.readFile(path.join(ws, "docs", "API.md"), "utf8")).toContain("GET /users");
    expect(rep.files_changed.map((f) => f.path)).toEqual(["docs/API.md"]);
    expect(rep.verification?.passed).toBe(true);
    // The partner's summary went back to the parent as the Task result.
    expect(resultText(parentAgain!)).toContain("Wrote docs/API.md with GET /users.");
    expect(resultText(parentAgain!)).toContain("doc-writer ended completed");
    // Shared budgets: the partner's calls and turns count in the parent's totals; the report lists the child.
    expect(rep.model_calls).toBe(4);
    expect(rep.turns).toBe(4);
    expect(rep.children).toEqual([
      expect.objectContaining({
        agent: "doc-writer",
        status: "completed",
        summary: "Wrote docs/API.md with GET /users.",
        turns: 2,
        model_calls: 2,
      }),
    ]);
    expect(rep.cost_usd).toBeGreaterThan(rep.children![0]!.cost_usd);
    expect(text(r)).toContain("## Delegated to partner agents");
    expect(text(r)).toContain("doc-writer [completed] document the API");
    const transcript = (await fs.readFile(rep.transcript, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(
      transcript.some(
        (e) => e.type === "tool" && e.child === 1 && e.child_agent === "doc-writer" && e.name === "Write",
      ),
    ).toBe(true);
    // The delegation is a run of its own, linked to its parent; the listing counts its cost once (in the parent).
    const childId = rep.children![0]!.run_id!;
    expect(childId).toMatch(/^\d{8}-\d{6}-[0-9a-f]{6}$/);
    const own = (await conn.client.callTool({ name: "TaskOutput", arguments: { run_id: childId, wait_seconds: 0 } }))
      .structuredContent as unknown as TaskReport;
    expect(own).toMatchObject({ kind: "report", parent_run_id: rep.run_id, agent: "doc-writer", status: "completed" });
    expect(own.summary).toBe("Wrote docs/API.md with GET /users.");
    const list = (await conn.client.callTool({ name: "TaskOutput", arguments: {} })).structuredContent as {
      runs: { run_id: string }[];
      totals: { runs: number; cost_usd: number };
    };
    expect(list.runs.map((x) => x.run_id).sort()).toEqual([rep.run_id, childId].sort());
    expect(list.totals).toMatchObject({ runs: 1 });
    expect(list.totals.cost_usd).toBeCloseTo(rep.cost_usd, 10);
  });

  test("an unknown partner is an error result the parent can act on", async () => {
    const { model, conn } = await withPartner([
      reply(use("Task", { description: "x", prompt: "y", subagent_type: "nobody" })),
      reply(say("Did it myself.")),
    ]);
    const r = (await conn.client.callTool({
      name: "Task",
      arguments: { description: "t", prompt: "Do it." },
    })) as CallToolResult;
    expect((r.structuredContent as unknown as TaskReport).status).toBe("completed");
    expect(resultText(model.requests[1]!)).toContain('Unknown partner \\"nobody\\"');
    expect(resultText(model.requests[1]!)).toContain("doc-writer");
  });
});
