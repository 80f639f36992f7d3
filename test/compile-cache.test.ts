import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import module from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cacheRoot, safeCacheDir, startsServer, workspaceCandidates } from "../src/compile-cache.js";
import { CLI, connect, fail, ok, tempDir } from "./helpers.js";

/** Node's compile cache exists from Node 22.1 on; on Node 20 start-up must simply work without it. */
const HAS_CACHE = typeof (module as { enableCompileCache?: unknown }).enableCompileCache === "function";

let outer: string;
let ws: string;
beforeAll(async () => {
  outer = await tempDir("bdm-cache-");
  ws = path.join(outer, "ws");
  await fs.mkdir(ws);
  await fs.writeFile(path.join(ws, "a.txt"), "hello\n");
});
afterAll(() => fs.rm(outer, { recursive: true, force: true }));

/** Every file under dir, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

/** Starts the built server with XDG_CACHE_HOME=cacheHome, checks it answers and serves a call, and stops it. */
async function startOnce(cacheHome: string): Promise<void> {
  const c = await connect(["--workspace", ws, "--sandbox", "off"], { env: { XDG_CACHE_HOME: cacheHome } });
  try {
    expect((await c.client.listTools()).tools.map((t) => t.name)).toContain("Read");
    expect(ok(await c.call("Read", { file_path: "a.txt" }))).toContain("hello");
  } finally {
    await c.close();
  }
}

describe("where the compile cache goes", () => {
  test("XDG_CACHE_HOME when absolute, else ~/.cache; always a folder of this package", () => {
    if (process.platform !== "linux") return;
    expect(cacheRoot({ XDG_CACHE_HOME: "/x/cache" }, "/home/u")).toBe("/x/cache/backend-developer-mcp/compile-cache");
    expect(cacheRoot({ XDG_CACHE_HOME: "rel" }, "/home/u")).toBe("/home/u/.cache/backend-developer-mcp/compile-cache");
    expect(cacheRoot({}, "/home/u")).toBe("/home/u/.cache/backend-developer-mcp/compile-cache");
  });

  test("the workspace is each --workspace given (every spelling), else the current folder", () => {
    expect(workspaceCandidates(["--workspace", "a", "--sandbox", "off"], "/c")).toEqual(["/c/a"]);
    expect(workspaceCandidates(["--workspace=/abs"], "/c")).toEqual(["/abs"]);
    expect(workspaceCandidates(["-w", "b", "-w", "/d"], "/c")).toEqual(["/c/b", "/d"]);
    expect(workspaceCandidates(["--sandbox", "off"], "/c")).toEqual(["/c"]);
  });

  test("only a server start uses it: init, --help and --version write nothing", () => {
    expect(startsServer(["--workspace", "a"])).toBe(true);
    expect(startsServer([])).toBe(true);
    for (const argv of [["init", "--print"], ["--help"], ["-h"], ["--version"], ["-v"]])
      expect(startsServer(argv)).toBe(false);
  });

  test("never inside a workspace: refused before anything is created there", () => {
    const inWs = path.join(ws, ".cache", "backend-developer-mcp", "compile-cache");
    expect(safeCacheDir(inWs, [ws])).toBeUndefined();
    expect(safeCacheDir(ws, [ws])).toBeUndefined();
    expect(existsSync(path.join(ws, ".cache"))).toBe(false);
  });

  test("a private real folder of this user; a link or a folder others may write is refused", async () => {
    const fresh = path.join(outer, "fresh", "compile-cache");
    expect(safeCacheDir(fresh, [ws])).toBe(fresh);
    if (process.platform === "win32") return;
    expect((await fs.stat(fresh)).mode & 0o777).toBe(0o700);
    const open = path.join(outer, "open");
    await fs.mkdir(open);
    await fs.chmod(open, 0o777);
    expect(safeCacheDir(open, [ws])).toBeUndefined();
    const link = path.join(outer, "link");
    await fs.symlink(fresh, link);
    expect(safeCacheDir(link, [ws])).toBeUndefined();
  });
});

describe("start-up with the compile cache", () => {
  test("a first start fills the cache (Node >= 22.1), a second start uses it", async () => {
    const home = path.join(outer, "cache-home");
    await startOnce(home);
    const files = await filesUnder(path.join(home, "backend-developer-mcp", "compile-cache"));
    if (HAS_CACHE) expect(files.length).toBeGreaterThan(0);
    else expect(files).toEqual([]);
    await startOnce(home);
  });

  test("a corrupt or hostile cache does not break start-up", async () => {
    const home = path.join(outer, "corrupt-home");
    await startOnce(home);
    const files = await filesUnder(path.join(home, "backend-developer-mcp", "compile-cache"));
    for (const [i, f] of files.entries()) await fs.writeFile(f, i % 2 ? "" : Buffer.alloc(4096, 0xab));
    await startOnce(home);
    await startOnce(home);
  });

  test("a cache folder that is not a folder, or that others may write, is passed over", async () => {
    const home = path.join(outer, "odd-home");
    await fs.mkdir(path.join(home, "backend-developer-mcp"), { recursive: true });
    await fs.writeFile(path.join(home, "backend-developer-mcp", "compile-cache"), "not a folder");
    await startOnce(home);
    const open = path.join(outer, "open-home");
    await fs.mkdir(path.join(open, "backend-developer-mcp", "compile-cache"), { recursive: true });
    await fs.chmod(path.join(open, "backend-developer-mcp", "compile-cache"), 0o777);
    await startOnce(open);
    expect(await filesUnder(open)).toEqual([]);
  });

  test("with the cache folder inside the workspace, start-up writes nothing there (and the workspace is refused)", () => {
    const r = spawnSync(process.execPath, [CLI, "--workspace", ws, "--sandbox", "off"], {
      env: { ...process.env, XDG_CACHE_HOME: path.join(ws, ".cache"), XDG_STATE_HOME: path.join(outer, "state") },
      input: "",
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.stderr).toMatch(/holds this server's compile cache/);
    expect(existsSync(path.join(ws, ".cache"))).toBe(false);
  });
});

describe("a workspace that holds the compile cache", () => {
  // Attack: with the workspace's commands able to write the cache, code planted there would run with the server's
  // rights at every later start of any server (on a Node that has the cache). Such a workspace is refused.
  test("given with --workspace, the server does not start and says why", async () => {
    const home = path.join(outer, "home-ws");
    await fs.mkdir(home, { recursive: true });
    const r = spawnSync(process.execPath, [CLI, "--workspace", home, "--sandbox", "off"], {
      env: { PATH: process.env.PATH, HOME: home, XDG_STATE_HOME: path.join(outer, "state") },
      input: "",
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      /holds this server's compile cache .*Open a project folder instead, or set XDG_CACHE_HOME/s,
    );
  });

  test("taken from the client's roots, every tool call is refused with the reason", async () => {
    const client = new Client({ name: "roots-client", version: "1.0.0" }, { capabilities: { roots: {} } });
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: pathToFileURL(ws).href, name: "ws" }] }));
    const c = await connect([], { client, env: { XDG_CACHE_HOME: path.join(ws, ".cache") } });
    try {
      for (const [tool, args] of [
        ["Write", { file_path: ".cache/backend-developer-mcp/compile-cache/x", content: "planted" }],
        ["Run", { command: "echo planted > .cache/backend-developer-mcp/compile-cache/y" }],
      ] as const)
        expect(fail(await c.call(tool, args))).toMatch(/holds this server's compile cache/);
      expect(existsSync(path.join(ws, ".cache", "backend-developer-mcp", "compile-cache", "x"))).toBe(false);
      expect(existsSync(path.join(ws, ".cache", "backend-developer-mcp", "compile-cache", "y"))).toBe(false);
    } finally {
      await c.close();
    }
  });
});
