import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CreateMessageRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, test } from "vitest";
import { demoSteps, demoWorkspace } from "../src/testing/demo.js";
import { overloaded, reply, say, use, type MessagesRequest, type Step } from "../src/testing/scripted-model.js";
import type { TaskReport } from "../src/task/records.js";
import { useScriptedServers } from "./fixtures.js";
import { connect, type Connection, processAlive, QUICK_COMMANDS, tempDir, text, waitUntil } from "./helpers.js";

const servers = useScriptedServers({ BACKEND_AGENT_MAX_RETRIES: "3" });
const stateDir = servers.stateDir;
const withModel = (steps: Step[], ws?: string, args: string[] = []) => servers.start(steps, { ws, args });

const task = (conn: Connection, args: Record<string, unknown> = {}) =>
  conn.call("Task", { description: "test task", prompt: "Do the task.", ...args });
const report = (r: CallToolResult) => r.structuredContent as unknown as TaskReport;
const lastUserBlocks = (req: MessagesRequest) =>
  req.messages.at(-1)!.content as { type: string; content?: { text: string }[]; is_error?: boolean; text?: string }[];
const git = (ws: string, ...args: string[]) => execFileSync("git", ["-C", ws, ...args], { encoding: "utf8" }).trim();

describe("Task with the Anthropic API (scripted over real HTTP)", () => {
  test("a multi-turn task writes files, runs tests, and is verified by the server", async () => {
    const { model, ws, conn } = await withModel(demoSteps());
    const messages: string[] = [];
    const r = (await conn.client.callTool(
      { name: "Task", arguments: { description: "users endpoint", prompt: "Add GET /users." } },
      undefined,
      { onprogress: (p) => messages.push(p.message ?? "") },
    )) as CallToolResult;
    const rep = report(r);
    expect(rep.status).toBe("completed");
    expect(rep.turns).toBe(5);
    expect(rep.files_changed.map((f) => f.path).sort()).toEqual(["src/users.js", "test/users.test.js"]);
    expect(rep.files_changed.every((f) => f.status === "added" && f.insertions > 0)).toBe(true);
    expect(rep.verification?.checks.map((c) => [c.name, c.command, c.project, c.result])).toEqual([
      ["test", "npm test", ".", "passed"],
    ]);
    expect(rep.verification?.outcome).toBe("passed");
    expect(rep.usage.input_tokens).toBeGreaterThan(0);
    expect(rep.usage.cache_read_input_tokens).toBeGreaterThan(0);
    expect(messages.some((m) => m.startsWith("turn "))).toBe(true);
    expect(text(r)).toContain("[completed]");
    expect(text(r)).toContain(rep.revert_command);
    // The model saw the real tool results: the Run result holds the real test output.
    const runResult = lastUserBlocks(model.requests[4]!)[0]!;
    expect(runResult.content![0]!.text).toMatch(/# pass 3/);
    // The transcript and report are on disk in the server's state folder; the workspace gets no .git and no records.
    expect(rep.transcript).toBe(path.join(stateDir(ws), "runs", rep.run_id, "transcript.jsonl"));
    const transcript = (await fs.readFile(rep.transcript, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(transcript.filter((e) => e.type === "tool").map((e) => e.name)).toEqual([
      "Glob",
      "Read",
      "Write",
      "Write",
      "Run",
    ]);
    expect(transcript.at(-1).type).toBe("report");
    expect(existsSync(path.join(ws, ".git"))).toBe(false);
    expect(existsSync(path.join(ws, ".backend-agent"))).toBe(false);
  });

  test("puts cache breakpoints on the system prompt, the tools and the newest message", async () => {
    const { model, conn } = await withModel(demoSteps());
    await task(conn);
    for (const req of model.requests) {
      expect(req.system?.[0]?.cache_control).toEqual({ type: "ephemeral" });
      expect(req.tools?.at(-1)?.cache_control).toEqual({ type: "ephemeral" });
      const last = req.messages.at(-1)!.content as { cache_control?: unknown }[];
      expect(last.at(-1)?.cache_control).toEqual({ type: "ephemeral" });
      expect(
        req.messages
          .slice(0, -1)
          .flatMap((m) => (Array.isArray(m.content) ? m.content : []))
          .some((b) => "cache_control" in b),
      ).toBe(false);
    }
    expect(model.requests[0]!.tools!.map((t) => t.name)).toEqual([
      "web_search",
      "web_fetch",
      "Read",
      "Write",
      "Edit",
      "Grep",
      "Glob",
      "Run",
      "TaskOutput",
      "TaskStop",
      "AskUserQuestion",
      "Task",
    ]);
    expect(model.requests[0]!.system![0]!.text).toContain("backend");
  });

  test("a test the model leaves failing ends as verification_failed after two fix rounds", async () => {
    const failing = `import { test } from "node:test";\nimport assert from "node:assert/strict";\ntest("adds", () => assert.equal(1 + 1, 3));\n`;
    const { model, conn } = await withModel([
      reply(use("Write", { file_path: "test/math.test.js", content: failing })),
      reply(say("Done: all tests pass.")),
      reply(say("Fixed, all green now.")),
      reply(say("Definitely fixed.")),
    ]);
    const rep = report(await task(conn));
    expect(rep.status).toBe("verification_failed");
    expect(rep.fix_rounds).toBe(2);
    expect(rep.summary).toBe("Definitely fixed.");
    const tests = rep.verification!.checks.find((c) => c.name === "test")!;
    expect(tests.result).toBe("failed");
    expect(tests.newly_failing).toContain("adds");
    expect(tests.details).toContain("adds");
    const fixRequest = lastUserBlocks(model.requests[2]!);
    expect(fixRequest[0]!.text).toContain("The server ran its own checks");
    expect(fixRequest[0]!.text).toContain("npm test");
  });

  test("the model fixing the failure in a fix round ends completed", async () => {
    const { conn } = await withModel([
      reply(
        use("Write", {
          file_path: "test/math.test.js",
          content: `import { test } from "node:test";\nimport assert from "node:assert/strict";\ntest("adds", () => assert.equal(1 + 1, 3));\n`,
        }),
      ),
      reply(say("Done.")),
      reply(use("Edit", { file_path: "test/math.test.js", old_string: "1 + 1, 3", new_string: "1 + 1, 2" })),
      reply(say("Fixed the assertion.")),
    ]);
    const rep = report(await task(conn));
    expect(rep.status).toBe("completed");
    expect(rep.fix_rounds).toBe(1);
  });

  test("TypeScript errors in changed files fail verification (ts-morph over the tsconfig program)", async () => {
    const ws = await tempDir();
    await fs.writeFile(
      path.join(ws, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, target: "ES2022", module: "NodeNext" },
        include: ["src"],
      }),
    );
    const { conn } = await withModel(
      [
        reply(use("Write", { file_path: "src/a.ts", content: "export const n: number = 'text';\n" })),
        reply(say("Done.")),
        reply(say("Done.")),
        reply(say("Done.")),
      ],
      ws,
    );
    const rep = report(await task(conn));
    expect(rep.status).toBe("verification_failed");
    const ts = rep.verification!.checks.find((c) => c.name === "tsc")!;
    expect(ts.result).toBe("failed");
    expect(ts.newly_failing).toEqual([expect.stringMatching(/^src\/a\.ts: error TS2322/)]);
  });

  test("529 overloaded, then success: the SDK retries and the task completes", async () => {
    const { model, conn } = await withModel([overloaded, overloaded, reply(say("Nothing to change."))]);
    const rep = report(await task(conn));
    expect(rep.status).toBe("completed");
    expect(model.requests).toHaveLength(3);
    expect(rep.turns).toBe(1);
  });

  test("retries exhausted surface a clear error", async () => {
    const { conn } = await withModel([overloaded, overloaded, overloaded, overloaded]);
    const r = await task(conn);
    const rep = report(r);
    expect(rep.status).toBe("error");
    expect(rep.error).toMatch(/Anthropic API was still failing after 3 retries \(529 overloaded_error/);
    expect(rep.error).toContain("retries ran out");
  });

  test("a malformed tool call goes back to the model as a tool error and the loop continues", async () => {
    const { model, conn } = await withModel([
      reply(use("Read", { path: "package.json" })),
      reply(use("Read", { file_path: "package.json" })),
      reply(say("Read it.")),
    ]);
    const rep = report(await task(conn));
    expect(rep.status).toBe("completed");
    const toolError = lastUserBlocks(model.requests[1]!)[0]!;
    expect(toolError.is_error).toBe(true);
    expect(toolError.content![0]!.text).toContain('Invalid arguments for Read:\n- "file_path"');
    expect(lastUserBlocks(model.requests[2]!)[0]!.is_error).toBeUndefined();
  });

  test("max_turns stops the loop with status max_turns", async () => {
    const { model, conn } = await withModel([
      reply(use("Glob", { pattern: "*" })),
      reply(use("Glob", { pattern: "*" })),
      reply(use("Glob", { pattern: "*" })),
    ]);
    const rep = report(await task(conn, { max_turns: 2 }));
    expect(rep.status).toBe("max_turns");
    expect(rep.turns).toBe(2);
    expect(model.requests).toHaveLength(2);
  });

  test("a client cancel during Run ends the run as cancelled, with no process left and the report on disk", async () => {
    const marker = `305.${process.pid}1`;
    const { ws, conn } = await withModel([
      reply(use("Write", { file_path: "notes.txt", content: "x\n" })),
      reply(use("Run", { command: `sleep ${marker}` })),
    ]);
    const abort = new AbortController();
    const call = conn.client.callTool(
      { name: "Task", arguments: { description: "cancel me", prompt: "Work." } },
      undefined,
      { signal: abort.signal },
    );
    const alive = () => processAlive(marker);
    expect(await waitUntil(alive, 10_000)).toBe(true);
    abort.abort();
    await expect(call).rejects.toThrow();
    let rep: TaskReport | undefined;
    const readReport = async () => {
      const runs = await fs.readdir(path.join(stateDir(ws), "runs")).catch(() => []);
      rep = await fs
        .readFile(path.join(stateDir(ws), "runs", runs[0] ?? "-", "report.json"), "utf8")
        .then(JSON.parse, () => undefined);
      return rep !== undefined;
    };
    await waitUntil(readReport, 10_000);
    expect(rep?.status).toBe("cancelled");
    expect(rep?.files_changed.map((f) => f.path)).toEqual(["notes.txt"]);
    expect(await waitUntil(() => !alive(), 5000)).toBe(true);
  });

  test("a workspace agent with a restricted tools list cannot call Run", async () => {
    const ws = await demoWorkspace();
    await fs.mkdir(path.join(ws, ".claude", "agents"), { recursive: true });
    await fs.writeFile(
      path.join(ws, ".claude", "agents", "db-reviewer.md"),
      "---\nname: db-reviewer\ndescription: Reviews schemas\ntools: Read, Grep\nmodel: haiku\n---\nYou review database schemas.\n",
    );
    const { model, conn } = await withModel(
      [reply(use("Run", { command: "touch ran.txt" })), reply(say("Could not run."))],
      ws,
    );
    const rep = report(await task(conn, { subagent_type: "db-reviewer" }));
    expect(rep.agent).toBe("db-reviewer");
    expect(rep.model).toBe("claude-haiku-5-5");
    expect(model.requests[0]!.tools!.map((t) => t.name)).toEqual(["Read", "Grep"]);
    expect(model.requests[0]!.system![0]!.text).toBe("You review database schemas.");
    const refused = lastUserBlocks(model.requests[1]!)[0]!;
    expect(refused.is_error).toBe(true);
    expect(refused.content![0]!.text).toContain('Tool "Run" is not available to this agent');
    await expect(fs.access(path.join(ws, "ran.txt"))).rejects.toThrow();
  });

  test("an unknown subagent_type lists the known ones", async () => {
    const { conn } = await withModel([]);
    const r = await task(conn, { subagent_type: "frontend-wizard" });
    expect(r.isError).toBe(true);
    expect(text(r)).toContain('Unknown subagent_type "frontend-wizard". Known agents: backend-developer');
  });

  test("the checkpoint is a commit in the server's git dir, the workspace's repository is untouched, and the revert command restores the files exactly", async () => {
    const ws = await demoWorkspace();
    git(ws, "init", "-q");
    await fs.writeFile(path.join(ws, "keep.txt"), "original\r\nbytes\n");
    await fs.writeFile(path.join(ws, "gone.txt"), "delete me\n");
    git(ws, "add", "-A");
    execFileSync("git", ["-C", ws, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]);
    await fs.writeFile(path.join(ws, "wip.txt"), "uncommitted work\n");
    git(ws, "add", "wip.txt");
    const repoState = () => ({
      head: git(ws, "rev-parse", "HEAD"),
      index: git(ws, "diff", "--cached", "--name-only"),
      stash: git(ws, "stash", "list"),
      branch: git(ws, "branch", "--show-current"),
      refs: git(ws, "for-each-ref"),
      exclude: execFileSync("cat", [path.join(ws, ".git", "info", "exclude")], { encoding: "utf8" }),
    });
    const before = repoState();
    const { conn } = await withModel(
      [
        reply(use("Read", { file_path: "keep.txt" }), use("Read", { file_path: "wip.txt" })),
        reply(
          use("Edit", { file_path: "keep.txt", old_string: "original", new_string: "changed" }),
          use("Write", { file_path: "wip.txt", content: "overwritten\n" }),
          use("Write", { file_path: "src/new.js", content: "export {};\n" }),
          use("Write", { file_path: "café ü's.txt", content: "accents\n" }),
          use("Run", { command: "rm gone.txt" }),
        ),
        reply(say("Changed things.")),
      ],
      ws,
    );
    const rep = report(await task(conn));
    expect(rep.files_changed).toEqual([
      { path: "café ü's.txt", status: "added", insertions: 1, deletions: 0 },
      { path: "gone.txt", status: "deleted", insertions: 0, deletions: 1 },
      { path: "keep.txt", status: "modified", insertions: 1, deletions: 1 },
      { path: "src/new.js", status: "added", insertions: 1, deletions: 0 },
      { path: "wip.txt", status: "modified", insertions: 1, deletions: 1 },
    ]);
    expect(rep.checkpoint).toMatch(/^[0-9a-f]{40}$/);
    expect(
      execFileSync("git", [`--git-dir=${path.join(stateDir(ws), "git")}`, "cat-file", "-t", rep.checkpoint!], {
        encoding: "utf8",
      }).trim(),
    ).toBe("commit");
    expect(() => git(ws, "cat-file", "-e", rep.checkpoint!)).toThrow();
    expect(repoState()).toEqual(before);
    // Work done after the run, in a file the run did not touch, survives the revert.
    await fs.writeFile(path.join(ws, "later.txt"), "the user's own later work\n");
    execFileSync("bash", ["-c", rep.revert_command]);
    expect(await fs.readFile(path.join(ws, "later.txt"), "utf8")).toBe("the user's own later work\n");
    await expect(fs.access(path.join(ws, "café ü's.txt"))).rejects.toThrow();
    expect(await fs.readFile(path.join(ws, "keep.txt"), "utf8")).toBe("original\r\nbytes\n");
    expect(await fs.readFile(path.join(ws, "wip.txt"), "utf8")).toBe("uncommitted work\n");
    expect(await fs.readFile(path.join(ws, "gone.txt"), "utf8")).toBe("delete me\n");
    await expect(fs.access(path.join(ws, "src", "new.js"))).rejects.toThrow();
  });
});

describe("Task without an API key", () => {
  test("no key and no sampling: a clear error saying how to enable one", async () => {
    const ws = await tempDir();
    const conn = await connect(["--workspace", ws], { env: { ANTHROPIC_API_KEY: "" } });
    servers.after(() => conn.close());
    const r = await task(conn);
    expect(r.isError).toBe(true);
    expect(text(r)).toContain("Set ANTHROPIC_API_KEY");
    expect(text(r)).toContain("does not offer MCP sampling");
  });

  test("MCP sampling with tools: the client's model does the work", async () => {
    const ws = await demoWorkspace();
    const client = new Client(
      { name: "sampling-client", version: "1.0.0" },
      { capabilities: { sampling: { tools: {} } } },
    );
    const seen: unknown[] = [];
    let turn = 0;
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      seen.push(req.params);
      turn++;
      if (turn === 1)
        return {
          model: "client-model",
          role: "assistant",
          stopReason: "toolUse",
          content: [
            { type: "tool_use", id: "call_1", name: "Write", input: { file_path: "hello.txt", content: "hi\n" } },
          ],
        };
      return {
        model: "client-model",
        role: "assistant",
        stopReason: "endTurn",
        content: { type: "text", text: "Wrote hello.txt." },
      };
    });
    const conn = await connect(["--workspace", ws], { env: { ANTHROPIC_API_KEY: "" }, client });
    servers.after(() => conn.close());
    const rep = report(await task(conn));
    expect(rep.status).toBe("completed");
    expect(rep.summary).toBe("Wrote hello.txt.");
    expect(await fs.readFile(path.join(ws, "hello.txt"), "utf8")).toBe("hi\n");
    const second = seen[1] as {
      messages: { role: string; content: { type: string; toolUseId?: string }[] }[];
      tools: { name: string }[];
    };
    expect(second.tools.map((t) => t.name)).toContain("Run");
    expect(second.messages.at(-1)!.content[0]).toMatchObject({ type: "tool_result", toolUseId: "call_1" });
  });
});

describe("prompts", () => {
  test("the role and the quick commands are MCP prompts that render their arguments", async () => {
    const ws = await tempDir();
    const conn = await connect(["--workspace", ws]);
    servers.after(() => conn.close());
    const { prompts } = await conn.client.listPrompts();
    expect(prompts.map((p) => p.name).sort()).toEqual(["backend-developer", ...QUICK_COMMANDS]);
    const api = prompts.find((p) => p.name === "be-api")!;
    expect(api.arguments?.find((a) => a.name === "resource")?.required).toBe(true);
    const rendered = await conn.client.getPrompt({
      name: "be-api",
      arguments: { resource: "invoices", operations: "list, create" },
    });
    const body = (rendered.messages[0]!.content as { text: string }).text;
    expect(body).toContain("invoices");
    expect(body).toContain("list, create");
    expect(body).not.toContain("{{");
    const role = await conn.client.getPrompt({ name: "backend-developer", arguments: { task: "Add rate limiting" } });
    expect((role.messages[0]!.content as { text: string }).text).toMatch(/Add rate limiting$/);
    const { resources } = await conn.client.listResources();
    const res = await conn.client.readResource({ uri: resources[0]!.uri });
    expect((res.contents[0] as { text: string }).text).toContain("name: backend-developer");
  });
});
