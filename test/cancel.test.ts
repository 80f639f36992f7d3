import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { reply, ScriptedModel, type Step, use } from "../src/testing/scripted-model.js";
import { connect, type Connection, ok, tempDir, waitUntil } from "./helpers.js";

/**
 * Cancels and timeouts of Run at many moments during sandbox start-up. Every process a command starts (the shell,
 * both bwraps, socat bridges, the command itself) inherits MARK through --allow-env, so survivors can be counted.
 */
const MARK = `BDM_CANCEL_TEST=${randomUUID()}`;
const OFFSETS_MS = Array.from({ length: 48 }, (_, i) => Math.round((i * 75) / 47));
let ws: string;
let c: Connection;

/** The servers and the long-lived helpers the runtime starts once (network bridges): not a command's processes. */
const resident = new Set<number>();
/** After a command has run to its end: the server and what it keeps running (the workspace network's holder and relays) are resident. */
const addResident = (server: Connection) => {
  const descends = (pid: number): boolean => pid === server.pid || (pid > 1 && descends(parentOf(pid)));
  for (const pid of survivors()) if (descends(pid)) resident.add(pid);
};

/** Pids of live processes whose environment carries MARK (zombies have none and do not count), the resident ones aside. */
function survivors(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || resident.has(Number(entry))) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, "latin1").split("\0").includes(MARK)) found.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

const killQuietly = (pid: number) => {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
};

const describe = (pids: number[]) =>
  pids.map((pid) => {
    try {
      return `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, "latin1").replaceAll("\0", " ").slice(0, 120)}`;
    } catch {
      return `${pid}: gone`;
    }
  });

beforeAll(async () => {
  ws = await tempDir("bdm-cancel-");
  c = await connect(["--workspace", ws, "--sandbox", "os", "--allow-env", "BDM_CANCEL_TEST"], {
    env: { BDM_CANCEL_TEST: MARK.split("=")[1]! },
  });
  // The runtime is started by the first command; the race under test is each command's own start-up.
  expect(ok(await c.call("Run", { command: "echo $BDM_CANCEL_TEST" }))).toContain(MARK.split("=")[1]);
  addResident(c);
  expect(resident.has(c.pid)).toBe(true);
  expect(survivors()).toEqual([]);
});

const parentOf = (pid: number) => Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
afterAll(async () => {
  await c?.close();
  await fs.rm(ws, { recursive: true, force: true });
});

test(`a Run cancelled at ${OFFSETS_MS.length} moments of 0-75 ms during start-up leaves no process behind`, {
  timeout: 300_000,
}, async () => {
  const left: string[] = [];
  for (const offset of OFFSETS_MS) {
    const abort = new AbortController();
    const call = c.client.callTool({ name: "Run", arguments: { command: "sleep 300; echo never" } }, undefined, {
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), offset);
    await call.catch(() => undefined);
    if (!(await waitUntil(() => survivors().length === 0, 5_000)))
      left.push(`cancel at ${offset} ms: ${describe(survivors()).join("; ")}`);
    // a cancel that came too late for the sweep would leave MARKed processes only until the next check: clear them
    survivors().forEach(killQuietly);
  }
  expect(left).toEqual([]);
  expect(await waitUntil(() => survivors().length === 0, 5_000)).toBe(true);
});

test("a Run timing out at 1-75 ms during start-up leaves no process behind", { timeout: 300_000 }, async () => {
  const left: string[] = [];
  for (const offset of OFFSETS_MS.filter((_, i) => i % 2 === 0)) {
    const r = await c.call("Run", { command: "sleep 300; echo never", timeout: Math.max(1, offset) });
    expect(r.isError).toBeFalsy();
    if (!(await waitUntil(() => survivors().length === 0, 5_000)))
      left.push(`timeout at ${offset} ms: ${describe(survivors()).join("; ")}`);
    survivors().forEach(killQuietly);
  }
  expect(left).toEqual([]);
});

test("a command's own background processes do not outlive the call", async () => {
  const pidFile = path.join(ws, "bg.pid");
  // One holds the output pipe (the call waits for it), one lets go of it (the call returns at once).
  const both = `(setsid sleep 300 & echo $! > ${pidFile}); (setsid sleep 301 >/dev/null 2>&1 &); echo started`;
  ok(await c.call("Run", { command: both }));
  // Gone when the call returns, not some time later.
  expect(survivors()).toEqual([]);
});

test("an unsandboxed command's background processes do not outlive the call either", async () => {
  const off = await connect(["--workspace", ws, "--sandbox", "off", "--allow-env", "BDM_CANCEL_TEST"], {
    env: { BDM_CANCEL_TEST: MARK.split("=")[1]! },
  });
  try {
    addResident(off);
    ok(await off.call("Run", { command: "(setsid sleep 301 >/dev/null 2>&1 &); echo started" }));
    expect(survivors()).toEqual([]);
  } finally {
    await off.close();
  }
});

test("a Task stopped at 0-75 ms after its agent asked for a Run leaves no process behind", {
  timeout: 300_000,
}, async () => {
  const offsets = OFFSETS_MS.filter((_, i) => i % 3 === 0);
  let runId: Promise<string> = Promise.resolve("");
  let conn: Connection | undefined;
  const stops: Promise<unknown>[] = [];
  // Each model reply asks for a long Run; the stop is sent `offset` ms after the reply, while that Run starts.
  const steps: Step[] = offsets.map((offset) => () => {
    const stopped = new Promise((done) =>
      setTimeout(() => void runId.then((id) => conn!.call("TaskStop", { run_id: id })).then(done, done), offset),
    );
    stops.push(stopped);
    return reply(use("Run", { command: "sleep 300; echo never" }));
  });
  const model = new ScriptedModel(steps);
  const dir = await tempDir("bdm-cancel-task-");
  try {
    const env = {
      ANTHROPIC_API_KEY: "test-key",
      ANTHROPIC_BASE_URL: await model.start(),
      BDM_CANCEL_TEST: MARK.split("=")[1]!,
    };
    conn = await connect(["--workspace", dir, "--sandbox", "os", "--allow-env", "BDM_CANCEL_TEST"], { env });
    ok(await conn.call("Run", { command: "true" }));
    addResident(conn);
    const left: string[] = [];
    for (const [i, offset] of offsets.entries()) {
      let setId: (id: string) => void = () => undefined;
      runId = new Promise((r) => (setId = r));
      const started = await conn.call("Task", { description: "stop me", prompt: "Work.", run_in_background: true });
      setId((started.structuredContent as { run_id: string }).run_id);
      expect(await waitUntil(() => stops.length > i, 30_000)).toBe(true);
      await stops[i];
      if (!(await waitUntil(() => survivors().length === 0, 5_000)))
        left.push(`stop at ${offset} ms: ${describe(survivors()).join("; ")}`);
      survivors().forEach(killQuietly);
    }
    expect(left).toEqual([]);
  } finally {
    await conn?.close();
    await model.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
