import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CLI, connect, processAlive, tempDir, text, waitUntil, type Connection } from "./helpers.js";

interface RunResult {
  output: string;
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  cancelled: boolean;
  duration_ms: number;
  omitted_chars: number;
  sandboxed: boolean;
}

const structured = (r: CallToolResult) => r.structuredContent as unknown as RunResult;
const peakRss = async (pid: number) =>
  Number(/VmHWM:\s+(\d+)/.exec(await fs.readFile(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
const hasBwrap = spawnSync("bash", ["-c", "command -v bwrap && command -v socat"]).status === 0;

let ws: string;
let c: Connection;

beforeAll(async () => {
  ws = await tempDir();
  c = await connect(["--workspace", ws], {
    env: {
      ANTHROPIC_API_KEY: "sk-ant-test-secret",
      GH_TOKEN: "ghp-test",
      DB_PASSWORD: "hunter2",
      MY_SETTING: "visible?",
    },
  });
});
afterAll(async () => {
  await c.close();
  await fs.rm(ws, { recursive: true, force: true });
});

describe("Run", () => {
  test("returns exit code and combined output in order", async () => {
    const r = await c.call("Run", { command: "echo one; echo two >&2; echo three; exit 3" });
    expect(r.isError).toBeFalsy();
    const s = structured(r);
    expect(s.output).toBe("one\ntwo\nthree\n");
    expect(s.exit_code).toBe(3);
    expect(s.timed_out).toBe(false);
    expect(text(r)).toContain("Exit code 3.");
    expect(text(r)).toContain(s.output);
  });

  test("runs in the workspace root", async () => {
    await fs.writeFile(path.join(ws, "marker.txt"), "here");
    const s = structured(await c.call("Run", { command: "pwd; cat marker.txt" }));
    expect(s.output).toBe(`${ws}\nhere`);
  });

  test("strips ANSI codes and survives invalid UTF-8", async () => {
    const s = structured(await c.call("Run", { command: String.raw`printf '\033[1;31mred\033[0m \xff\xfe ok\n'` }));
    expect(s.output).toBe("red \uFFFD\uFFFD ok\n");
  });

  test("caps 50 MB of output to head and tail with a marker, and the server's memory stays bounded", async () => {
    const r = await c.call("Run", {
      command: "echo FIRST; head -c 50000000 /dev/zero | tr '\\0' 'x' | fold -w 100; echo; echo LAST",
    });
    const s = structured(r);
    expect(s.exit_code).toBe(0);
    expect(s.output.length).toBeLessThanOrEqual(30_000);
    expect(s.output.startsWith("FIRST\n")).toBe(true);
    expect(s.output.endsWith("LAST\n")).toBe(true);
    expect(s.output).toMatch(/\[… \d+ characters of output left out …\]/);
    expect(s.omitted_chars).toBeGreaterThan(49_000_000);
    expect(await peakRss(c.pid)).toBeLessThan(200 * 1024 * 1024);
  });

  test("a timeout kills the whole tree, background jobs and grandchildren included", async () => {
    const marker = `301.${process.pid}1`;
    const r = await c.call("Run", {
      command: `sleep ${marker} & (sleep ${marker}; echo never) & bash -c 'sleep ${marker}'; wait`,
      timeout: 1000,
    });
    const s = structured(r);
    expect(s.timed_out).toBe(true);
    expect(text(r)).toContain("Timed out after 1000 ms");
    expect(await waitUntil(() => !processAlive(marker), 5000)).toBe(true);
  });

  test("background jobs left behind by a finished command are ended", async () => {
    const marker = `302.${process.pid}1`;
    const s = structured(await c.call("Run", { command: `sleep ${marker} & echo started` }));
    expect(s.output).toBe("started\n");
    expect(await waitUntil(() => !processAlive(marker), 5000)).toBe(true);
  });

  test("cancelling the request kills the tree and the server goes on", async () => {
    const marker = `303.${process.pid}1`;
    const abort = new AbortController();
    const call = c.client.callTool(
      { name: "Run", arguments: { command: `sleep ${marker} & sleep ${marker}; wait` } },
      undefined,
      { signal: abort.signal },
    );
    expect(await waitUntil(() => processAlive(marker), 5000)).toBe(true);
    abort.abort();
    await expect(call).rejects.toThrow();
    // SIGTERM at once, SIGKILL 0.5 s later; the bound leaves room for a loaded CI machine.
    expect(await waitUntil(() => !processAlive(marker), 5000)).toBe(true);
    expect(structured(await c.call("Run", { command: "echo still here" })).output).toBe("still here\n");
  });

  test("sends progress notifications with the latest output line", async () => {
    // Each step waits for a file the test creates once it has seen the previous step's progress message.
    const messages: string[] = [];
    const command = "for i in 1 2 3; do echo step$i; until [ -e gate$i ]; do sleep 0.02; done; done";
    const call = c.client.callTool({ name: "Run", arguments: { command } }, undefined, {
      onprogress: (p) => messages.push(p.message ?? ""),
    });
    for (const i of [1, 2, 3]) {
      expect(await waitUntil(() => messages.some((m) => m.includes(`step${i}`)), 10_000)).toBe(true);
      await fs.writeFile(path.join(ws, `gate${i}`), "");
    }
    const r = (await call) as CallToolResult;
    expect(structured(r).exit_code).toBe(0);
    expect(messages.filter((m) => /step\d/.test(m)).length).toBeGreaterThanOrEqual(3);
  });

  test("keeps secrets out of the command's environment", async () => {
    const s = structured(await c.call("Run", { command: "env" }));
    expect(s.output).toMatch(/^HOME=/m);
    expect(s.output).toMatch(/^PATH=/m);
    for (const name of ["ANTHROPIC_API_KEY", "GH_TOKEN", "DB_PASSWORD", "MY_SETTING"])
      expect(s.output).not.toMatch(new RegExp(`^${name}=`, "m"));
    expect(s.output).not.toContain("sk-ant-test-secret");
  });

  test("rejects empty and over-long commands with clear errors", async () => {
    const empty = await c.call("Run", { command: "" });
    expect(empty.isError).toBe(true);
    expect(text(empty)).toContain("command is empty");
    const blank = await c.call("Run", { command: "   " });
    expect(text(blank)).toContain("command is blank");
    const long = await c.call("Run", { command: "x".repeat(100_001) });
    expect(long.isError).toBe(true);
    expect(text(long)).toContain("over 100000 characters");
    const badTimeout = await c.call("Run", { command: "true", timeout: 700_000 });
    expect(text(badTimeout)).toContain('"timeout"');
  });
});

describe("Run options", () => {
  test("--allow-env passes exactly the named variable", async () => {
    const dir = await tempDir();
    const conn = await connect(["--workspace", dir, "--allow-env", "GH_TOKEN"], {
      env: { GH_TOKEN: "ghp-allowed", OTHER_TOKEN: "no" },
    });
    const s = structured(await conn.call("Run", { command: "env" }));
    expect(s.output).toMatch(/^GH_TOKEN=ghp-allowed$/m);
    expect(s.output).not.toMatch(/^OTHER_TOKEN=/m);
    await conn.close();
  });

  test("--max-commands 1 runs commands one at a time", async () => {
    const dir = await tempDir();
    const conn = await connect(["--workspace", dir, "--max-commands", "1"]);
    // Each command holds its slot until the test opens its gate; a second command starting meanwhile would log "start" twice.
    const cmd = (n: number) =>
      `echo start ${n} >> log; until [ -e gate${n} ]; do sleep 0.02; done; echo end ${n} >> log`;
    const log = () =>
      readFileSync(path.join(dir, "log"), { encoding: "utf8", flag: "a+" }).trim().split("\n").filter(Boolean);
    const calls = [1, 2, 3].map((n) => conn.call("Run", { command: cmd(n) }));
    for (let step = 1; step <= 3; step++) {
      expect(await waitUntil(() => log().length === 2 * step - 1, 10_000)).toBe(true);
      const running = Number(log().at(-1)!.split(" ")[1]);
      await fs.writeFile(path.join(dir, `gate${running}`), "");
      expect(await waitUntil(() => log().length >= 2 * step, 10_000)).toBe(true);
    }
    await Promise.all(calls);
    expect(log().map((l) => l.split(" ")[0])).toEqual(["start", "end", "start", "end", "start", "end"]);
    await conn.close();
  });
});

describe.runIf(hasBwrap)("Run in the OS sandbox", () => {
  let listener: net.Server;
  let listenerError: Error | undefined;
  let port: number;
  beforeAll(async () => {
    // A probe may close before reading the greeting (the kernel then resets the connection): never an unhandled error.
    listener = net.createServer((s) => {
      s.on("error", () => undefined);
      s.end("hello\n");
    });
    listener.on("error", (e) => (listenerError = e));
    await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
    port = (listener.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => listener.close(() => r())));
  // Reads the greeting before closing, so the exchange completes and proves data flowed both ways.
  const probe = () => `exec 3<>/dev/tcp/127.0.0.1/${port} && read -r -t 10 line <&3 && echo "CONNECTED $line"`;

  test("writes outside the workspace fail and leave the target absent", async () => {
    const outside = path.join(path.dirname(ws), `outside-${Date.now()}.txt`);
    const s = structured(await c.call("Run", { command: `echo hi > ${outside}; echo inside > inside.txt` }));
    expect(s.sandboxed).toBe(true);
    expect(s.output).toContain("Read-only file system");
    await expect(fs.access(outside)).rejects.toThrow();
    expect(await fs.readFile(path.join(ws, "inside.txt"), "utf8")).toBe("inside\n");
  });

  test("the .git folder stays read-only to commands, since the server runs git outside the sandbox", async () => {
    spawnSync("git", ["init", "-q", ws]);
    const s = structured(
      await c.call("Run", { command: "echo '../../evil' > .git/commondir; echo done > allowed.txt; cat allowed.txt" }),
    );
    expect(s.output).toContain("Read-only file system");
    expect(s.output).toContain("done");
    await expect(fs.access(path.join(ws, ".git", "commondir"))).rejects.toThrow();
  });

  test("network is off by default and on with --allow-network", async () => {
    const off = structured(await c.call("Run", { command: probe() }));
    expect(off.output).not.toContain("CONNECTED");
    expect(off.exit_code).not.toBe(0);
    const dir = await tempDir();
    const conn = await connect(["--workspace", dir, "--allow-network"]);
    const on = structured(await conn.call("Run", { command: probe() }));
    expect(on.output).toContain("CONNECTED hello");
    expect(listenerError).toBeUndefined();
    await conn.close();
  });

  test("--sandbox os refuses to start without bubblewrap, naming the package", async () => {
    const dir = await tempDir();
    const r = spawnSync(process.execPath, [CLI, "--workspace", dir, "--sandbox", "os"], {
      env: { PATH: "/nonexistent", HOME: dir, XDG_CACHE_HOME: path.join(os.tmpdir(), "bdm-run-cache") },
      encoding: "utf8",
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("apt-get install bubblewrap socat");
    expect(r.stdout).toBe("");
  });

  test("--sandbox off runs unconfined and says so in the instructions", async () => {
    const dir = await tempDir();
    const conn = await connect(["--workspace", dir, "--sandbox", "off"]);
    expect(conn.client.getInstructions()).toContain("OS sandbox is off");
    expect(structured(await conn.call("Run", { command: "true" })).sandboxed).toBe(false);
    await conn.close();
  });
});
