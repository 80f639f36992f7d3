import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { type CallToolResult, ErrorCode, ListRootsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CLI, connect, type Connection, fail, ok, tempDir } from "./helpers.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { name: string; version: string };
const FILE_TOOLS = ["Read", "Write", "Edit", "Grep", "Glob"];
const run = promisify(execFile);

/** Runs the CLI to completion; never throws on a non-zero exit. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { timeout: 15_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

let ws: string;
let c: Connection;

beforeAll(async () => {
  ws = await tempDir("bdm-proto-");
  await fs.writeFile(path.join(ws, "a.txt"), "hi\n");
  c = await connect(["--workspace", ws]);
});
afterAll(async () => {
  await c?.close();
  await fs.rm(ws, { recursive: true, force: true });
});

describe("bad calls get clear answers and the server keeps going", () => {
  test.each([
    [
      "Read",
      { file_path: 5 },
      /^Invalid arguments for Read:\n- "file_path": .*expected string.*\nFix the arguments and call Read again\.$/,
    ],
    ["Read", {}, /^Invalid arguments for Read:\n- "file_path": /],
    ["Read", { file_path: "a.txt", offset: -1 }, /- "offset": /],
    ["Write", { file_path: "b.txt" }, /^Invalid arguments for Write:\n- "content": /],
    ["Edit", { file_path: "a.txt", old_string: "hi", new_string: "yo", replace_all: "yes" }, /- "replace_all": /],
    ["Grep", { pattern: "" }, /^Invalid arguments for Grep:\n- "pattern": /],
    ["Grep", { pattern: "x", output_mode: "everything" }, /- "output_mode": /],
    ["Grep", { pattern: "x", "-A": 1000 }, /- "-A": /],
    ["Glob", { pattern: 1 }, /^Invalid arguments for Glob:\n- "pattern": /],
  ])("%s %j is an isError result", async (tool, args, message) => {
    expect(fail(await c.call(tool, args))).toMatch(message);
    expect(ok(await c.call("Read", { file_path: "a.txt" }))).toBe("     1\thi");
  });

  test("arguments missing altogether", async () => {
    const r = (await c.client.callTool({ name: "Glob" })) as CallToolResult;
    expect(fail(r)).toMatch(/^Invalid arguments for Glob:\n- "pattern": /);
  });

  test("an unknown tool is an MCP error (invalid params) naming the tools; the server still answers", async () => {
    const err = await c.call("Nope", {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(ErrorCode.InvalidParams);
    expect((err as McpError).message).toMatch(/Unknown tool "Nope"\. Available tools: Read, Write, Edit, Grep, Glob/);
    expect(ok(await c.call("Read", { file_path: "a.txt" }))).toBe("     1\thi");
    await expect(c.client.ping()).resolves.toEqual({});
  });
});

describe("tools/list", () => {
  test("lists the file tools with descriptions from tools/*.md and their input schemas", async () => {
    const { tools } = await c.client.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    expect([...byName.keys()]).toEqual(expect.arrayContaining(FILE_TOOLS));
    for (const name of FILE_TOOLS) {
      const t = byName.get(name)!;
      expect(t.description).toBe(readFileSync(path.join(ROOT, "tools", `${name}.md`), "utf8").trim());
      expect(t.title).toBeTruthy();
      expect(t.annotations?.title).toBe(t.title);
      expect(t.inputSchema.type).toBe("object");
    }
    expect(byName.get("Read")!.inputSchema.required).toEqual(["file_path"]);
    expect(Object.keys(byName.get("Read")!.inputSchema.properties!)).toEqual(["file_path", "offset", "limit"]);
    expect(byName.get("Edit")!.inputSchema.required).toEqual(["file_path", "old_string", "new_string"]);
    expect(byName.get("Grep")!.inputSchema.required).toEqual(["pattern"]);
    expect(Object.keys(byName.get("Grep")!.inputSchema.properties!)).toEqual(
      expect.arrayContaining([
        "pattern",
        "path",
        "glob",
        "type",
        "output_mode",
        "-i",
        "-n",
        "-A",
        "-B",
        "-C",
        "multiline",
        "head_limit",
      ]),
    );
    expect(byName.get("Glob")!.inputSchema.required).toEqual(["pattern"]);
  });

  test("Read, Grep and Glob are read-only; Write and Edit are destructive", async () => {
    const { tools } = await c.client.listTools();
    const ann = (name: string) => tools.find((t) => t.name === name)!.annotations!;
    for (const name of ["Read", "Grep", "Glob"])
      expect(ann(name), name).toMatchObject({ readOnlyHint: true, destructiveHint: false, openWorldHint: false });
    for (const name of ["Write", "Edit"])
      expect(ann(name), name).toMatchObject({ readOnlyHint: false, destructiveHint: true, openWorldHint: false });
    expect(ann("Write").idempotentHint).toBe(true);
    expect(ann("Edit").idempotentHint).toBe(false);
  });

  test("Write and Edit declare an outputSchema; the read-only tools do not", async () => {
    const { tools } = await c.client.listTools();
    const schema = (name: string) => tools.find((t) => t.name === name)!.outputSchema;
    expect(schema("Write")).toMatchObject({
      type: "object",
      required: expect.arrayContaining(["file_path", "action", "bytes", "lines", "message"]),
    });
    expect(Object.keys(schema("Write")!.properties!)).toEqual(["file_path", "action", "bytes", "lines", "message"]);
    expect(schema("Edit")).toMatchObject({
      type: "object",
      required: expect.arrayContaining(["file_path", "replacements", "snippet", "diff"]),
    });
    for (const name of ["Read", "Grep", "Glob"]) expect(schema(name), name).toBeUndefined();
  });
});

describe("prompts", () => {
  test("backend-developer and the be-* quick commands are listed with their arguments", async () => {
    const { prompts } = await c.client.listPrompts();
    const byName = new Map(prompts.map((p) => [p.name, p]));
    expect(byName.get("backend-developer")!.arguments).toEqual([
      expect.objectContaining({ name: "task", required: false }),
    ]);
    expect(byName.get("be-api")!.arguments).toEqual([
      expect.objectContaining({ name: "resource", required: true }),
      expect.objectContaining({ name: "operations", required: false }),
    ]);
    const commands = (await fs.readdir(path.join(ROOT, "prompts", "commands")))
      .filter((f) => f.endsWith(".md"))
      .map((f) => `be-${f.slice(0, -3)}`);
    expect(commands.length).toBeGreaterThan(0);
    for (const name of commands) expect(byName.get(name)?.description, name).toBeTruthy();
  });

  test("be-api renders its arguments into the task text", async () => {
    const r = await c.client.getPrompt({ name: "be-api", arguments: { resource: "orders", operations: "list, get" } });
    const body = (r.messages[0]!.content as { text: string }).text;
    expect(body).toContain("Implement API endpoints for the resource: orders");
    expect(body).toContain(
      "Operations requested (if blank, implement list, get, create, update and delete): list, get",
    );
    expect(body).not.toMatch(/\{\{\s*\w+\s*\}\}/);
  });

  test("backend-developer returns the role, with the task appended when given", async () => {
    const role = readFileSync(path.join(ROOT, "prompts", "agents", "backend-developer.md"), "utf8");
    const plain = await c.client.getPrompt({ name: "backend-developer" });
    expect((plain.messages[0]!.content as { text: string }).text).toBe(role);
    const withTask = await c.client.getPrompt({
      name: "backend-developer",
      arguments: { task: "Add a /health endpoint" },
    });
    expect((withTask.messages[0]!.content as { text: string }).text).toBe(`${role}\n\n## Task\nAdd a /health endpoint`);
  });
});

describe("command line", () => {
  type Outcome = Awaited<ReturnType<typeof cli>>;
  let out: Record<string, Outcome>;
  const missing = () => path.join(ws, "does-not-exist");
  const file = () => path.join(ws, "a.txt");
  beforeAll(async () => {
    const runs: Record<string, string[]> = {
      "--help": ["--help"],
      "--version": ["--version"],
      missing: ["--workspace", missing()],
      file: ["--workspace", file()],
      bogus: ["--bogus"],
    };
    const results = await Promise.all(Object.values(runs).map(cli));
    out = Object.fromEntries(Object.keys(runs).map((k, i) => [k, results[i]!]));
  });

  test("--help prints usage to stdout and exits 0", () => {
    const r = out["--help"]!;
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith(`${pkg.name} ${pkg.version}: `)).toBe(true);
    expect(r.stdout).toContain(`Usage: ${pkg.name} [--workspace DIR]`);
    expect(r.stdout).toMatch(/-w, --workspace DIR/);
    expect(r.stderr).toBe("");
  });

  test("--version prints the version alone and exits 0", () => {
    expect(out["--version"]).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
  });

  test("a missing workspace exits 2 with a clear message on stderr and nothing on stdout", () => {
    expect(out.missing).toEqual({
      code: 2,
      stdout: "",
      stderr: `${pkg.name}: Cannot use workspace ${missing()}: it does not exist\n`,
    });
  });

  test("a workspace that is a file, and an unknown option, also exit 2", () => {
    expect(out.file).toEqual({
      code: 2,
      stdout: "",
      stderr: `${pkg.name}: Cannot use workspace ${file()}: ${file()} is not a directory\n`,
    });
    expect(out.bogus).toMatchObject({ code: 2, stdout: "" });
    expect(out.bogus!.stderr).toMatch(
      /^backend-developer-mcp: Unknown option '--bogus'.*\nRun with --help for usage\.\n$/s,
    );
  });
});

describe("raw stdio", () => {
  test("stdout carries only JSON-RPC, stderr only the startup line; garbage input is survived; closing stdin exits 0", async () => {
    // A temp folder of its own: the start-up sweep of dead servers' folders must not find other tests' and say so.
    const env = { ...process.env, TMPDIR: await tempDir("bdm-proto-tmp-") };
    const child = spawn(process.execPath, [CLI, "--workspace", ws], { stdio: ["pipe", "pipe", "pipe"], env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const send = (m: unknown) => child.stdin.write(`${typeof m === "string" ? m : JSON.stringify(m)}\n`);
    const responses = () =>
      stdout
        .split("\n")
        .filter(Boolean)
        .map(
          (l) =>
            JSON.parse(l) as {
              jsonrpc: string;
              id?: number;
              result?: Record<string, unknown>;
              error?: { code: number };
            },
        );

    send({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    send({ jsonrpc: "2.0", method: "notifications/initialized" });
    send("this is not json at all");
    send({ jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "Read", arguments: { file_path: "a.txt" } } });
    send({ jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "Nope", arguments: {} } });
    send({
      jsonrpc: "2.0",
      id: 4,
      method: "tools/call",
      params: { name: "Grep", arguments: { pattern: "hi", output_mode: "content" } },
    });
    send({ jsonrpc: "2.0", id: 5, method: "ping" });

    const deadline = Date.now() + 15_000;
    // The parse error's answer has id null: wait for the five requests' own answers.
    const answered = () => [1, 2, 3, 4, 5].every((id) => responses().some((r) => r.id === id));
    while (!answered() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.stdin.end();
    const code = await exited;

    const lines = stdout.split("\n").filter(Boolean);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    const byId = new Map(responses().map((r) => [r.id, r]));
    expect([...byId.keys()].filter((id) => id !== null).sort(), `stdout:\n${stdout}\nstderr:\n${stderr}`).toEqual([
      1, 2, 3, 4, 5,
    ]);
    for (const r of responses()) expect(r.jsonrpc).toBe("2.0");
    expect(byId.get(1)!.result).toMatchObject({ serverInfo: { name: pkg.name, version: pkg.version } });
    expect(byId.get(2)!.result).toEqual({ content: [{ type: "text", text: "     1\thi" }] });
    expect(byId.get(3)!.error).toMatchObject({ code: ErrorCode.InvalidParams });
    expect(byId.get(4)!.result).toEqual({ content: [{ type: "text", text: "a.txt:1:hi" }] });
    expect(byId.get(5)!.result).toEqual({});

    const logLines = stderr
      .split("\n")
      .filter(Boolean)
      .filter((l) => !/^\[backend-developer-mcp\] warning: .*sandbox/i.test(l));
    expect(logLines, stderr).toHaveLength(1);
    expect(logLines[0]).toMatch(
      new RegExp(
        `^\\[${pkg.name}\\] info: v${pkg.version.replaceAll(".", "\\.")} · workspace ${ws} · .*tools Read, Write, Edit, Grep, Glob`,
      ),
    );
    expect(code, stderr).toBe(0);
  });
});

describe("workspace from the client's roots", () => {
  test("without --workspace the first file:// root is used", async () => {
    const client = new Client({ name: "roots-client", version: "1.0.0" }, { capabilities: { roots: {} } });
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: pathToFileURL(ws).href, name: "ws" }] }));
    const r = await connect([], { client });
    try {
      expect(ok(await r.call("Read", { file_path: "a.txt" }))).toBe("     1\thi");
      expect(ok(await r.call("Glob", { pattern: "*.txt" }))).toBe("a.txt");
      expect(fail(await r.call("Read", { file_path: "../x" }))).toMatch(/^Access denied: /);
    } finally {
      await r.close();
    }
  });
});
