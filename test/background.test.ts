import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, test } from "vitest";
import type { BackgroundView } from "../src/sandbox/background-view.js";
import { reply, say, ScriptedModel, use } from "../src/testing/scripted-model.js";
import { connect, fail, ok, processAlive, tempDir, text, waitUntil, type Connection } from "./helpers.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});

const hasSandbox = spawnSync("bash", ["-c", "command -v bwrap && command -v socat"]).status === 0;
const modes = hasSandbox ? (["os", "off"] as const) : (["off"] as const);

async function server(args: string[] = [], env: Record<string, string> = {}): Promise<{ ws: string; c: Connection }> {
  const ws = await tempDir();
  const c = await connect(["--workspace", ws, ...args], { env });
  // Listed first, the tools' output schemas make the client validate every structured result against them.
  await c.client.listTools();
  cleanup.push(
    () => fs.rm(ws, { recursive: true, force: true }),
    () => c.close(),
  );
  return { ws, c };
}

const view = (r: CallToolResult) => r.structuredContent as unknown as BackgroundView;
const bgId = async (c: Connection, command: string) => {
  const r = await c.call("Run", { command, run_in_background: true });
  ok(r);
  const id = (r.structuredContent as { run_id?: string }).run_id!;
  expect(id).toMatch(/^bg-[0-9a-f]{8}$/);
  return id;
};
/** Reads a background command until its accumulated output satisfies check (bounded by TaskOutput's own waits). */
async function readUntil(
  c: Connection,
  id: string,
  check: (all: string, v: BackgroundView) => boolean,
  rounds = 20,
): Promise<{ all: string; last: BackgroundView }> {
  let all = "";
  for (let i = 0; i < rounds; i++) {
    const v = view(await c.call("TaskOutput", { run_id: id, wait_seconds: 5 }));
    all += v.output;
    if (check(all, v)) return { all, last: v };
  }
  throw new Error(`background command ${id} never produced the expected output; got: ${all}`);
}

/** A node HTTP server on a free port that prints the port, answers "pong <path>", and handles its errors. */
const httpServer = (marker: string) =>
  `node -e 'const s = require("http").createServer((q, r) => r.end("pong " + q.url)); s.on("error", (e) => { console.error(e.message); process.exit(1); }); s.listen(0, "127.0.0.1", () => console.log("listening " + s.address().port));' ${marker}`;

describe.each(modes)("background commands (--sandbox %s)", (mode) => {
  test("a server started by one Run answers the next Run; TaskStop leaves no process behind", async () => {
    const { c } = await server(["--sandbox", mode]);
    const marker = `bgserver${Date.now()}`;
    const id = await bgId(c, httpServer(marker));
    const { all } = await readUntil(c, id, (out) => /listening \d+/.test(out));
    const port = /listening (\d+)/.exec(all)![1];
    const curl = await c.call("Run", { command: `curl -s 127.0.0.1:${port}/hello` });
    expect(ok(curl)).toContain("pong /hello");
    expect(processAlive(marker)).toBe(true);
    const stopped = view(await c.call("TaskStop", { run_id: id }));
    expect(stopped.status).toBe("killed");
    expect(stopped.stop_reason).toBe("TaskStop");
    expect(await waitUntil(() => !processAlive(marker), 5_000)).toBe(true);
    // Stopping again reports the same end; the server keeps serving.
    expect(view(await c.call("TaskStop", { run_id: id })).status).toBe("killed");
  });

  test("TaskOutput returns the output incrementally, then the exit code", async () => {
    const { ws, c } = await server(["--sandbox", mode]);
    // The command waits on files the test creates: each step is released by an event, not a clock.
    const id = await bgId(
      c,
      "echo first; until [ -e go1 ]; do sleep 0.05; done; echo second; until [ -e go2 ]; do sleep 0.05; done; echo third; exit 4",
    );
    const first = await readUntil(c, id, (out) => out.includes("first"));
    expect(first.all).toBe("first\n");
    expect(first.last.status).toBe("running");
    const nothing = view(await c.call("TaskOutput", { run_id: id, wait_seconds: 0 }));
    expect(nothing.output).toBe("");
    expect(nothing.total_bytes).toBe(6);
    await fs.writeFile(path.join(ws, "go1"), "");
    expect((await readUntil(c, id, (out) => out.includes("second"))).all).toBe("second\n");
    await fs.writeFile(path.join(ws, "go2"), "");
    const end = await readUntil(c, id, (_, v) => v.status !== "running");
    expect(end.all).toBe("third\n");
    expect(end.last).toMatchObject({ status: "exited", exit_code: 4, total_bytes: 19 });
    expect(text(await c.call("TaskOutput", { run_id: id, wait_seconds: 0 }))).toContain("exited with code 4");
  });
});

describe("background commands: limits and bad input", () => {
  test("a command that exits at once: its output and exit code come back on the next TaskOutput", async () => {
    const { c } = await server(["--sandbox", "off"]);
    const id = await bgId(c, "echo oops >&2; exit 7");
    const { all, last } = await readUntil(c, id, (_, v) => v.status !== "running");
    expect(all).toBe("oops\n");
    expect(last).toMatchObject({ status: "exited", exit_code: 7, signal: null });
  });

  test("unknown ids are clear errors, and the server keeps serving", async () => {
    const { c } = await server(["--sandbox", "off"]);
    expect(fail(await c.call("TaskStop", { run_id: "bg-00000000" }))).toMatch(/No background command bg-00000000/);
    expect(fail(await c.call("TaskOutput", { run_id: "bg-nothere" }))).toMatch(/No background command bg-nothere/);
    expect(ok(await c.call("Run", { command: "echo still here" }))).toContain("still here");
  });

  test("at most --max-background at once; TaskOutput without run_id lists them", async () => {
    const { c } = await server(["--sandbox", "off", "--max-background", "1"]);
    const id = await bgId(c, "sleep 300 # bgmax");
    expect(fail(await c.call("Run", { command: "sleep 300", run_in_background: true }))).toMatch(
      /1 background commands are already running.*TaskStop/s,
    );
    const list = await c.call("TaskOutput", {});
    expect(text(list)).toContain(`${id} [running] sleep 300 # bgmax`);
    expect((list.structuredContent as { background: { run_id: string }[] }).background.map((b) => b.run_id)).toEqual([
      id,
    ]);
    ok(await c.call("TaskStop", { run_id: id }));
    const again = await bgId(c, "true");
    expect(again).not.toBe(id);
  });

  test("starts at the same moment still respect --max-background", async () => {
    const { c } = await server(["--sandbox", "off", "--max-background", "2"]);
    const results = await Promise.all(
      [1, 2, 3, 4].map(() => c.call("Run", { command: "sleep 300", run_in_background: true })),
    );
    expect(results.filter((r) => !r.isError)).toHaveLength(2);
    expect(results.filter((r) => r.isError).map(text)).toEqual([
      expect.stringMatching(/already running/),
      expect.stringMatching(/already running/),
    ]);
  });

  test("a command is stopped after --background-timeout", async () => {
    const { c } = await server(["--sandbox", "off", "--background-timeout", "1"]);
    const id = await bgId(c, "echo up; sleep 300");
    const { last } = await readUntil(c, id, (_, v) => v.status !== "running");
    expect(last).toMatchObject({ status: "killed", stop_reason: "lifetime" });
  });

  // Stopped while bubblewrap is still setting up: a sandbox cloned at that moment must not survive.
  test("TaskStop right after the start leaves no process behind", async () => {
    const { c } = await server(["--sandbox", hasSandbox ? "os" : "off"]);
    const marker = `bgearly${Date.now()}`;
    for (let i = 0; i < 5; i++) {
      const id = await bgId(c, `sleep 300 # ${marker}`);
      expect(view(await c.call("TaskStop", { run_id: id })).status).toMatch(/^(killed|exited)$/);
      expect(processAlive(marker)).toBe(false);
    }
  });

  test("background commands end when the server exits", async () => {
    const { c } = await server(["--sandbox", hasSandbox ? "os" : "off"]);
    const marker = `bgexit${Date.now()}`;
    await bgId(c, `sleep 300 # ${marker}`);
    expect(await waitUntil(() => processAlive(marker), 5_000)).toBe(true);
    await c.close();
    expect(await waitUntil(() => !processAlive(marker), 10_000)).toBe(true);
  });
});

describe("background commands in a Task run", () => {
  test("a sub-agent starts a dev server, calls it, and the server is stopped when the run ends", async () => {
    const marker = `agentsrv${Date.now()}`;
    let bg = "";
    let port = "";
    const model = new ScriptedModel([
      reply(use("Run", { command: httpServer(marker), run_in_background: true })),
      (req) => {
        const last = JSON.stringify(req.messages.at(-1));
        bg = /bg-[0-9a-f]{8}/.exec(last)![0];
        return reply(use("TaskOutput", { run_id: bg, wait_seconds: 10 }));
      },
      (req) => {
        port = /listening (\d+)/.exec(JSON.stringify(req.messages.at(-1)))?.[1] ?? "";
        return reply(use("Run", { command: `curl -s 127.0.0.1:${port}/agent` }));
      },
      reply(say("The server answered.")),
    ]);
    const url = await model.start();
    cleanup.push(() => model.stop());
    const { c } = await server(["--sandbox", hasSandbox ? "os" : "off"], {
      ANTHROPIC_API_KEY: "test-key",
      ANTHROPIC_BASE_URL: url,
    });
    // A background command started by the client, still running through the whole Task run.
    const outside = await bgId(c, "sleep 300");
    const r = await c.call("Task", { description: "dev server", prompt: "Start the server and call it." });
    ok(r);
    // The sandbox's placeholder files (.bashrc, .mcp.json, …), present while commands run, are never changes of the run.
    expect((r.structuredContent as { files_changed: unknown[] }).files_changed).toEqual([]);
    expect(view(await c.call("TaskOutput", { run_id: outside, wait_seconds: 0 })).status).toBe("running");
    expect(port).toMatch(/^\d+$/);
    expect(JSON.stringify(model.requests[3]!.messages.at(-1))).toContain("pong /agent");
    expect(await waitUntil(() => !processAlive(marker), 10_000)).toBe(true);
    const list = (await c.call("TaskOutput", {})).structuredContent as {
      background: { run_id: string; status: string }[];
    };
    expect(list.background).toEqual([
      expect.objectContaining({ run_id: outside, status: "running" }),
      expect.objectContaining({ run_id: bg, status: "killed" }),
    ]);
  });
});
