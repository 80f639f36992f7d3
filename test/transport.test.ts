import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { PassThrough } from "node:stream";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StdioTransport } from "../src/server/stdio.js";
import { CLI, connect, type Connection, ok, tempDir, waitUntil } from "./helpers.js";

const LIMIT = 10 * 1024 * 1024;
let ws: string;

beforeAll(async () => {
  ws = await tempDir("bdm-transport-");
  await fs.writeFile(path.join(ws, "a.txt"), "hello\n");
});
afterAll(() => fs.rm(ws, { recursive: true, force: true }));

/** The server over raw stdio: lines in, parsed lines out. */
class Raw {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly replies: Record<string, unknown>[] = [];
  stderr = "";
  private rest = "";

  constructor() {
    this.proc = spawn(process.execPath, [CLI, "--workspace", ws, "--sandbox", "off"]);
    this.proc.on("error", (e) => (this.stderr += String(e)));
    this.proc.stdin.on("error", () => undefined);
    this.proc.stderr.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.proc.stdout.on("data", (d: Buffer) => {
      const lines = (this.rest + d.toString()).split("\n");
      this.rest = lines.pop()!;
      for (const line of lines) this.replies.push(JSON.parse(line) as Record<string, unknown>);
    });
  }

  send(message: unknown): void {
    this.proc.stdin.write(`${JSON.stringify(message)}\n`);
  }

  async reply(id: unknown): Promise<Record<string, unknown>> {
    expect(await waitUntil(() => this.replies.some((r) => r.id === id), 15_000)).toBe(true);
    return this.replies.find((r) => r.id === id)!;
  }

  async initialize(): Promise<void> {
    this.send({
      jsonrpc: "2.0",
      id: "init",
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    expect((await this.reply("init")).result).toBeDefined();
    this.send({ jsonrpc: "2.0", method: "notifications/initialized" });
  }

  close(): void {
    this.proc.kill();
  }
}

describe("message size limit", () => {
  let c: Connection;
  beforeAll(async () => {
    c = await connect(["--workspace", ws, "--sandbox", "off"]);
  });
  afterAll(() => c?.close());

  test("a 16 MiB Write is answered with -32600 naming the limit; the server keeps serving and logs one line", async () => {
    const big = "x".repeat(16 * 1024 * 1024);
    const error = await c.call("Write", { file_path: "big.txt", content: big }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(ErrorCode.InvalidRequest);
    expect((error as McpError).message).toMatch(/over the server's limit of 10 MiB/);
    expect(ok(await c.call("Read", { file_path: "a.txt" }))).toContain("hello");
    await expect(fs.stat(path.join(ws, "big.txt"))).rejects.toThrow();
    expect(
      c
        .stderr()
        .split("\n")
        .filter((l) => /limit of 10 MiB/.test(l)),
    ).toHaveLength(1);
  });

  test("a message just under the limit is accepted", async () => {
    const content = "y".repeat(LIMIT - 4096);
    ok(await c.call("Write", { file_path: "near.txt", content }));
    expect((await fs.stat(path.join(ws, "near.txt"))).size).toBe(content.length);
  });
});

describe("raw stdio", () => {
  let raw: Raw;
  beforeAll(() => {
    raw = new Raw();
  });
  afterAll(() => raw?.close());

  test("tools/call before initialize gets an error, not an answer; initialize then works", async () => {
    raw.send({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "Read", arguments: { file_path: "a.txt" } },
    });
    const early = await raw.reply(1);
    expect(early.result).toBeUndefined();
    expect(early.error).toMatchObject({ code: ErrorCode.InvalidRequest, message: expect.stringMatching(/initialize/) });
    await raw.initialize();
    raw.send({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "Read", arguments: { file_path: "a.txt" } },
    });
    expect(JSON.stringify((await raw.reply(2)).result)).toContain("hello");
  });

  test("an over-long line with the id first (as other SDKs send it) is answered with that id", async () => {
    const params = { name: "Write", arguments: { file_path: "big2.txt", content: "z".repeat(LIMIT) } };
    raw.proc.stdin.write(
      `{"jsonrpc":"2.0","id":"big-first","method":"tools/call","params":${JSON.stringify(params)}}\n`,
    );
    expect((await raw.reply("big-first")).error).toMatchObject({ code: ErrorCode.InvalidRequest });
  });

  test("a line that is not JSON gets a parse error, and the next request is served", async () => {
    raw.proc.stdin.write("{not json\n");
    expect(
      await waitUntil(
        () => raw.replies.some((r) => (r.error as { code?: number } | undefined)?.code === ErrorCode.ParseError),
        10_000,
      ),
    ).toBe(true);
    raw.send({ jsonrpc: "2.0", id: 3, method: "tools/list" });
    expect((await raw.reply(3)).result).toBeDefined();
  });
});

describe("start-up chores", () => {
  test("onInitializeAnswered runs once, when the answer to initialize is written, not before", async () => {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const written: string[] = [];
    stdout.on("data", (d: Buffer) => written.push(d.toString()));
    const t = new StdioTransport(() => undefined, LIMIT, stdin, stdout);
    const seen: string[] = [];
    t.onmessage = (m) => seen.push((m as { method?: string }).method ?? "?");
    let answered = 0;
    t.onInitializeAnswered = () => {
      answered++;
      expect(written.join("")).toContain('"id":7');
    };
    await t.start();
    stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id: 7, method: "initialize", params: {} })}\n`);
    await waitUntil(() => seen.length === 1, 5_000);
    await t.send({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "x" } });
    await t.send({ jsonrpc: "2.0", id: 6, result: {} });
    expect(answered).toBe(0);
    await t.send({ jsonrpc: "2.0", id: 7, result: {} });
    await t.send({ jsonrpc: "2.0", id: 7, result: {} });
    expect(answered).toBe(1);
    await t.close();
  });
});
