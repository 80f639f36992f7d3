// Every command this project gives a client (README, init for each host, the Claude Code plugin) writes nothing but
// JSON-RPC to stdout: started for real, sent initialize and tools/list, each stdout line must be a JSON-RPC message.
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { HOSTS } from "../src/hosts/init.js";
import { CLI, tempDir } from "./helpers.js";

const ROOT = path.resolve(import.meta.dirname, "..");
let ws: string;
beforeAll(async () => {
  ws = await tempDir("bdm-clients-");
});
afterAll(() => fs.rm(ws, { recursive: true, force: true }));

interface Launch {
  command: string;
  args: string[];
}

/** Starts a launch command, speaks MCP to it over stdio and returns every stdout line and the replies' ids. */
async function speak(
  { command, args }: Launch,
  cwd: string,
): Promise<{ lines: string[]; ids: unknown[]; stderr: string }> {
  const child = spawn(command, args, { cwd, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.on("error", () => undefined);
  const exited = new Promise<void>((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", () => resolve());
  });
  const send = (m: object) => child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", ...m })}\n`);
  send({
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
  });
  send({ method: "notifications/initialized" });
  send({ id: 2, method: "tools/list" });
  const deadline = Date.now() + 30_000;
  while (!stdout.includes('"id":2') && Date.now() < deadline && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 25));
  child.stdin.end();
  await exited;
  const lines = stdout.split("\n").filter(Boolean);
  const ids = lines.map((l) => (JSON.parse(l) as { id?: unknown }).id);
  return { lines, ids, stderr };
}

function expectOnlyJsonRpc(out: Awaited<ReturnType<typeof speak>>): void {
  expect(out.lines.length, out.stderr).toBeGreaterThanOrEqual(2);
  for (const line of out.lines) expect(JSON.parse(line), line).toMatchObject({ jsonrpc: "2.0" });
  expect(out.ids).toEqual(expect.arrayContaining([1, 2]));
}

describe("client commands speak only JSON-RPC on stdout", () => {
  test.each(HOSTS)("the entry init writes for %s", async (host) => {
    const printed = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, "init", "--client", host, "--workspace", ws, "--print"], { cwd: ws });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.on("error", reject);
      child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`init exited ${code}`))));
    });
    const config = JSON.parse(printed) as Record<string, Record<string, Launch>>;
    const entry = Object.values(config)[0]!["backend-developer"]!;
    // init writes absolute paths: the entry works from any folder (here the OS temp folder's root).
    expect(path.isAbsolute(entry.args[0]!)).toBe(true);
    const args = entry.args.map((a) => a.replace("${workspaceFolder}", ws));
    expectOnlyJsonRpc(await speak({ command: entry.command, args }, path.parse(ws).root));
  });

  test("the Claude Code plugin's entry, run from this clone", async () => {
    const mcp = JSON.parse(await fs.readFile(path.join(ROOT, "plugin", ".mcp.json"), "utf8")) as {
      mcpServers: Record<string, Launch>;
    };
    const entry = mcp.mcpServers["backend-developer"]!;
    const args = [
      ...entry.args.map((a) => a.replace("${CLAUDE_PLUGIN_ROOT}", path.join(ROOT, "plugin"))),
      "--workspace",
      ws,
    ];
    expectOnlyJsonRpc(await speak({ command: entry.command, args }, ws));
  });

  test("the README's command for running the server by hand", async () => {
    const readme = await fs.readFile(path.join(ROOT, "README.md"), "utf8");
    const command = /To run the server by hand on stdio: `([^`]+)`/.exec(readme)?.[1];
    expect(command).toBe("node dist/cli.js --workspace ./playground");
    const [bin, ...args] = command!.split(" ");
    expectOnlyJsonRpc(await speak({ command: bin!, args }, ROOT));
    // No script of npm's is given to a client: npm's banner would go to stdout.
    expect(JSON.parse(await fs.readFile(path.join(ROOT, "package.json"), "utf8")).scripts.start).toBeUndefined();
  });
});
