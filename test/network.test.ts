import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  adaptCommandLine,
  NetworkJoinError,
  quote,
  SharedNetwork,
  unquote,
  withoutInnerShell,
} from "../src/sandbox/netns.js";
import { CLI, connect, ok, tempDir, type Connection } from "./helpers.js";

const hasSandbox =
  process.platform === "linux" &&
  spawnSync("bash", ["-c", "command -v bwrap && command -v socat && command -v nsenter"]).status === 0;

/** The command line the installed sandbox runtime builds for a command, with the network confined as the server confines it. */
async function runtimeCommandLine(
  command: string,
  workdir: string,
): Promise<{ line: string; reset: () => Promise<void> }> {
  const { SandboxManager } = await import("@anthropic-ai/sandbox-runtime");
  const { rgPath } = await import("@vscode/ripgrep");
  const config = {
    filesystem: { denyRead: [], allowWrite: [workdir], denyWrite: [] },
    network: { allowedDomains: [], deniedDomains: [] },
    ripgrep: { command: rgPath },
  };
  await SandboxManager.initialize(config as unknown as Parameters<typeof SandboxManager.initialize>[0]);
  const line = await SandboxManager.wrapWithSandbox(command);
  const reset = async () => {
    SandboxManager.cleanupAfterCommand();
    await SandboxManager.reset();
  };
  return { line, reset };
}

describe.runIf(hasSandbox)("the runtime's command line, adapted to the workspace network", () => {
  let ws: string;
  let line: string;
  let reset: () => Promise<void>;
  beforeAll(async () => {
    ws = await tempDir();
    ({ line, reset } = await runtimeCommandLine(`echo "it's" $HOME 'a  b'`, ws));
  });
  afterAll(async () => {
    await reset();
    await fs.rm(ws, { recursive: true, force: true });
  });

  test("the installed runtime's line is recognised: --unshare-net and the per-command relays go, the command stays", () => {
    expect(quote(unquote(line))).toBe(line);
    const { words, relays } = adaptCommandLine(line);
    expect(words).not.toContain("--unshare-net");
    expect(relays?.http).toMatch(/\.sock$/);
    // One shell fewer: bwrap runs the seccomp helper directly, which runs the command.
    expect(words.slice(-5)).toEqual([
      "--",
      expect.stringMatching(/\/apply-seccomp$/),
      expect.stringMatching(/\/bash$/),
      "-c",
      `echo "it's" $HOME 'a  b'`,
    ]);
  });

  // A runtime upgrade that changes the line must fail loudly, never fall back to a network per command.
  test.each([
    ["without --unshare-net", (l: string) => l.replace(" --unshare-net", "")],
    ["with --unshare-net twice", (l: string) => l.replace(" --unshare-net", " --unshare-net --unshare-net")],
    ["with --unshare-all", (l: string) => l.replace(" --unshare-net", " --unshare-net --unshare-all")],
    ["with relays on other ports", (l: string) => l.replaceAll("TCP-LISTEN:3128", "TCP-LISTEN:3129")],
    ["with other quoting", (l: string) => l.replace(/'/, '"')],
    ["without bwrap", (l: string) => l.replace(/\S*bwrap /, "firejail ")],
  ])("a line %s is refused with a clear error", (_, change) => {
    const changed = change(line);
    expect(changed).not.toBe(line);
    expect(() => adaptCommandLine(changed)).toThrow(NetworkJoinError);
    expect(() => adaptCommandLine(changed)).toThrow(/not the one this server knows how to join.*Nothing ran/s);
  });

  test.each([
    ["another shell inside", ["--", "/bin/bash", "-c", "/x/apply-seccomp /bin/sh -c true"]],
    ["more than one command", ["--", "/bin/bash", "-c", "/x/apply-seccomp /bin/bash -c true; rm x"]],
    ["no seccomp helper", ["--", "/bin/bash", "-c", "/x/other /bin/bash -c true"]],
  ])("a command with %s keeps its shell", (_, words) => {
    expect(withoutInnerShell(words)).toEqual(words);
  });

  test("with --allow-network, a line that isolates the network is refused too", async () => {
    await expect(new SharedNetwork(false).join(line)).rejects.toThrow(/isolates the network although --allow-network/);
  });
});

describe.runIf(hasSandbox)("one network per workspace (--sandbox os)", () => {
  let ws: string;
  let c: Connection;
  let host: http.Server;
  let hostPort: number;
  beforeAll(async () => {
    ws = await tempDir();
    c = await connect(["--workspace", ws, "--sandbox", "os"]);
    host = http.createServer((_, res) => res.end("host loopback"));
    host.on("error", () => undefined);
    await new Promise<void>((resolve) => host.listen(0, "127.0.0.1", resolve));
    hostPort = (host.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await c.close();
    await new Promise((r) => host.close(r));
    await fs.rm(ws, { recursive: true, force: true });
  });

  test("commands share one loopback, with one relay pair; the host's loopback stays out of reach", async () => {
    const listeners = async () => {
      const out = ok(await c.call("Run", { command: "awk 'NR>1 && $4==\"0A\" {print $2}' /proc/net/tcp | sort" }));
      return out.split("\n\n[")[0]!.trim().split("\n");
    };
    const first = await listeners();
    // 3128 and 1080 (0C38, 0438): the workspace's relays, the same for every command.
    expect(first).toEqual(expect.arrayContaining(["00000000:0438", "00000000:0C38"]));
    expect(await listeners()).toEqual(first);
    const r = ok(await c.call("Run", { command: `curl -sS -m 3 127.0.0.1:${hostPort} || echo unreachable` }));
    expect(r).toContain("unreachable");
    expect(r).not.toContain("host loopback");
  });

  test("the namespace is not the server's", async () => {
    const inode = (await fs.readlink("/proc/self/ns/net")).trim();
    const inside = ok(await c.call("Run", { command: "readlink /proc/self/ns/net" }));
    expect(inside).toMatch(/net:\[\d+\]/);
    expect(inside).not.toContain(inode);
  });
});

const asRoot = process.getuid?.() === 0 && spawnSync("id", ["nobody"]).status === 0;

/**
 * Lets nobody traverse to file: adds o+x to the folders above it that lack it (a clone in a mktemp folder is 0700),
 * for the length of the test; returns how to put their modes back.
 */
async function traversableFor(file: string): Promise<() => Promise<void>> {
  const changed: [string, number][] = [];
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const mode = (await fs.stat(dir)).mode & 0o7777;
    if (mode & 0o001) continue;
    await fs.chmod(dir, mode | 0o001);
    changed.push([dir, mode]);
  }
  return async () => {
    for (const [dir, mode] of changed) await fs.chmod(dir, mode).catch(() => undefined);
  };
}

describe.runIf(hasSandbox && asRoot)(
  "one network per workspace, server not root (the holder gets its own user namespace)",
  () => {
    test("a background server answers the next command, and a service is reachable", async () => {
      const ws = await tempDir();
      await fs.chown(ws, 65534, 65534);
      const restore = await traversableFor(CLI);
      const client = new Client({ name: "test-client", version: "1.0.0" });
      const transport = new StdioClientTransport({
        command: "setpriv",
        args: [
          "--reuid=nobody",
          "--regid=nogroup",
          "--clear-groups",
          "--",
          process.execPath,
          CLI,
          "--workspace",
          ws,
          "--sandbox",
          "os",
          "--service",
          "redis",
        ],
        // HOME is the workspace here: the compile cache must live elsewhere, or the workspace is refused.
        env: { PATH: process.env.PATH!, HOME: ws, XDG_CACHE_HOME: path.join(os.tmpdir(), "bdm-nobody-cache") },
        stderr: "pipe",
      });
      transport.stderr?.on("data", () => undefined);
      const call = (args: Record<string, unknown>) =>
        client.callTool({ name: "Run", arguments: args }) as Promise<CallToolResult>;
      try {
        await client.connect(transport);
        const started = await call({
          command: `node -e 'const s = require("http").createServer((q, r) => r.end("pong")); s.on("error", (e) => { console.error(e.message); process.exit(1); }); s.listen(0, "127.0.0.1", () => console.log("port " + s.address().port))'`,
          run_in_background: true,
        });
        const id = (started.structuredContent as { run_id: string }).run_id;
        let port = "";
        for (let i = 0; i < 10 && !port; i++) {
          const out = (await client.callTool({ name: "TaskOutput", arguments: { run_id: id, wait_seconds: 5 } }))
            .structuredContent as { output: string };
          port = /port (\d+)/.exec(out.output)?.[1] ?? "";
        }
        const r = await call({
          command: `id -u; ulimit -u; curl -s 127.0.0.1:${port}; echo; redis-cli --no-auth-warning -u "$REDIS_URL" ping`,
        });
        const [uid, processCap, ...rest] = (r.structuredContent as { output: string }).output.split("\n");
        expect({ uid, rest }).toEqual({ uid: "65534", rest: ["pong", "PONG", ""] });
        // Not root: the command may start 4096 processes beyond those nobody already runs.
        expect(Number(processCap)).toBeGreaterThanOrEqual(4096);
        expect(Number(processCap)).toBeLessThan(4096 + 200);
      } finally {
        await client.close();
        await restore();
        await fs.rm(ws, { recursive: true, force: true });
        await fs.rm(path.join(os.tmpdir(), "backend-developer-mcp-services-65534"), { recursive: true, force: true });
      }
    });
  },
);
