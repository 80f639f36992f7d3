import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";

export const CLI = path.resolve(import.meta.dirname, "..", "dist", "cli.js");

/** Servers started by tests keep their state (checkpoints, run records) here unless a test names its own folder. */
export const TEST_STATE_HOME = path.join(os.tmpdir(), `bdm-test-state-${process.pid}`);
/** ... and their compile cache (Node >= 22.1) here, so a test's HOME shows only what the tools wrote. */
export const TEST_CACHE_HOME = path.join(os.tmpdir(), `bdm-test-cache-${process.getuid?.() ?? "user"}`);

/** A fresh real temp folder (realpath'd), removed by the caller's cleanup list. */
export async function tempDir(prefix = "bdm-"): Promise<string> {
  return fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), prefix)));
}

export interface Connection {
  client: Client;
  stderr: () => string;
  pid: number;
  close: () => Promise<void>;
  call: (name: string, args: Record<string, unknown>) => Promise<CallToolResult>;
}

/** Starts the built server over stdio and connects a real MCP client to it. */
export async function connect(
  args: string[],
  options: { env?: Record<string, string>; client?: Client } = {},
): Promise<Connection> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, ...args],
    env: {
      ...(process.env as Record<string, string>),
      XDG_STATE_HOME: TEST_STATE_HOME,
      XDG_CACHE_HOME: TEST_CACHE_HOME,
      ...options.env,
    },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const client = options.client ?? new Client({ name: "test-client", version: "1.0.0" });
  await client.connect(transport);
  return {
    client,
    stderr: () => stderr,
    pid: transport.pid!,
    close: () => client.close(),
    call: (name, a) => client.callTool({ name, arguments: a }) as Promise<CallToolResult>,
  };
}

export const text = (r: CallToolResult) =>
  r.content.map((c) => (c.type === "text" ? c.text : `[${c.type}]`)).join("\n");

/** The text of a successful result; fails the test with the tool's message otherwise. */
export function ok(r: CallToolResult): string {
  if (r.isError) throw new Error(`expected success, got an error: ${text(r)}`);
  return text(r);
}

/** The text of an error result; fails the test when the call succeeded. */
export function fail(r: CallToolResult): string {
  if (r.isError !== true) throw new Error(`expected an error, got: ${text(r)}`);
  return text(r);
}

/** Whether any process's command line contains marker. */
export const processAlive = (marker: string) => spawnSync("pgrep", ["-f", marker]).status === 0;

/** Polls check until it holds or ms pass; returns whether it held. */
export async function waitUntil(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
    if (await check()) return true;
  return check();
}

/** The quick-command prompts (prompts/commands/*.md), by name. */
export const QUICK_COMMANDS = [
  "be-api",
  "be-auth",
  "be-docker",
  "be-migrate",
  "be-model",
  "be-service",
  "be-test",
  "be-validate",
];
