import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, type Connection, fail, ok, tempDir, waitUntil } from "./helpers.js";

/** Leftovers, writable corners and hangs found by the security review (issue 12, item 7), with the real sandbox. */
let outer: string;
let ws: string;
let home: string;
const cleanup: (() => Promise<unknown>)[] = [];
const exitCode = (r: CallToolResult) => (r.structuredContent as { exit_code: number | null }).exit_code;

beforeAll(async () => {
  outer = await tempDir("bdm-hygiene-");
  [ws, home] = [path.join(outer, "ws"), path.join(outer, "home")];
  await fs.mkdir(ws);
  await fs.mkdir(path.join(home, ".npm", "_logs"), { recursive: true });
  await fs.mkdir(path.join(home, ".claude", "debug"), { recursive: true });
});
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
  await fs.rm(outer, { recursive: true, force: true });
});

async function server(workspace = ws, extra: string[] = []): Promise<Connection> {
  const c = await connect(["--workspace", workspace, "--sandbox", "os", ...extra], { env: { HOME: home } });
  cleanup.push(() => c.close());
  return c;
}

describe("what sandboxed commands may write", () => {
  let c: Connection;
  beforeAll(async () => {
    c = await server();
  });

  test("not $HOME/.npm/_logs nor $HOME/.claude/debug (runtime defaults); the workspace and TMPDIR yes", async () => {
    for (const dir of [".npm/_logs", ".claude/debug"]) {
      const r = await c.call("Run", { command: `touch "$HOME/${dir}/planted"` });
      expect(exitCode(r)).not.toBe(0);
      expect(existsSync(path.join(home, dir, "planted"))).toBe(false);
    }
    expect(exitCode(await c.call("Run", { command: 'touch in-ws "$TMPDIR/in-tmp"' }))).toBe(0);
    expect(existsSync(path.join(ws, "in-ws"))).toBe(true);
  });

  test("npm still works: its logs go to the private temp folder", async () => {
    const r = await c.call("Run", { command: "npm config get logs-dir" });
    expect(ok(r)).toMatch(/backend-agent-run-/);
  });

  // For root the kernel does not enforce RLIMIT_NPROC, so no cap is set; the non-root case is in network.test.ts.
  test("the number of processes a command may start is capped (ulimit -u) unless the server runs as root", async () => {
    const limit = ok(await c.call("Run", { command: "ulimit -u" })).split("\n")[0];
    const hostLimit = execFileSync("bash", ["-c", "ulimit -u"], { encoding: "utf8" }).trim();
    if (process.getuid?.() === 0) expect(limit).toBe(hostLimit);
    else expect(Number(limit)).toBeLessThan(Number(hostLimit) || Infinity);
  });

  test("concurrent Runs leave no empty .claude (or other mount point) in the workspace", async () => {
    const before = (await fs.readdir(ws)).sort();
    await Promise.all(Array.from({ length: 6 }, (_, i) => c.call("Run", { command: `sleep 0.${i}; echo ${i}` })));
    await Promise.all(Array.from({ length: 3 }, () => c.call("Run", { command: "true" })));
    expect((await fs.readdir(ws)).sort()).toEqual(before);
  });
});

describe("searches never hang", () => {
  let c: Connection;
  beforeAll(async () => {
    execFileSync("mkfifo", [path.join(ws, "fifo")]);
    await fs.writeFile(path.join(ws, "needle.txt"), "needle\n");
    c = await server();
  });

  test("Grep and Glob on a FIFO answer at once; searches around it still work", async () => {
    expect(fail(await c.call("Grep", { pattern: "x", path: "fifo" }))).toMatch(/fifo is not a regular file or folder/);
    expect(fail(await c.call("Glob", { pattern: "*", path: "fifo" }))).toMatch(/fifo is not a regular file or folder/);
    expect(ok(await c.call("Grep", { pattern: "needle" }))).toContain("needle.txt");
    expect(ok(await c.call("Glob", { pattern: "*.txt" }))).toContain("needle.txt");
  });
});

describe("stale leftovers of a killed server are cleaned on start", () => {
  const HOUR_AGO = new Date(Date.now() - 3_600_000);
  const deadPid = () => {
    const r = spawnSync("true");
    return r.pid!;
  };

  test("old temp files of ours go; links, folders, fresh ones and other names stay", async () => {
    const dir = path.join(outer, "stale-ws");
    const outside = path.join(outer, "outside.txt");
    await fs.mkdir(path.join(dir, "sub"), { recursive: true });
    await fs.writeFile(outside, "outside\n");
    const files = {
      old: ".a.txt.0123456789ab.tmp",
      oldDeep: "sub/.b.js.abcdef012345.tmp",
      fresh: ".c.txt.0123456789ab.tmp",
      other: ".d.txt.tmp",
      link: ".e.txt.0123456789ab.tmp",
      folder: ".f.txt.0123456789ab.tmp",
    };
    for (const f of [files.old, files.oldDeep, files.fresh, files.other]) await fs.writeFile(path.join(dir, f), "x");
    await fs.symlink(outside, path.join(dir, files.link));
    await fs.mkdir(path.join(dir, files.folder));
    for (const f of [files.old, files.oldDeep, files.other, files.folder])
      await fs.utimes(path.join(dir, f), HOUR_AGO, HOUR_AGO);
    await fs.lutimes(path.join(dir, files.link), HOUR_AGO, HOUR_AGO);

    const c = await server(dir);
    expect(await waitUntil(() => /removed 2 stale temp files/.test(c.stderr()), 15_000)).toBe(true);
    expect(existsSync(path.join(dir, files.old)) || existsSync(path.join(dir, files.oldDeep))).toBe(false);
    for (const f of [files.fresh, files.other, files.folder]) expect(existsSync(path.join(dir, f))).toBe(true);
    expect((await fs.lstat(path.join(dir, files.link))).isSymbolicLink()).toBe(true);
    expect(await fs.readFile(outside, "utf8")).toBe("outside\n");
  });

  test("temp folders of dead servers go; a live server's, links and other names stay", async () => {
    const tmp = os.tmpdir();
    const dead = path.join(tmp, `backend-agent-run-${deadPid()}-test${Date.now()}`);
    const live = path.join(tmp, `backend-agent-run-${process.pid}-test${Date.now()}`);
    const link = path.join(tmp, `backend-agent-run-${deadPid()}-link${Date.now()}`);
    const target = path.join(outer, "kept-target");
    for (const d of [dead, live, target]) await fs.mkdir(d, { recursive: true });
    await fs.writeFile(path.join(dead, "left.txt"), "x");
    await fs.writeFile(path.join(target, "keep.txt"), "x");
    await fs.symlink(target, link);
    cleanup.push(
      () => fs.rm(live, { recursive: true, force: true }),
      () => fs.rm(link, { force: true }),
    );

    const c = await server();
    expect(await waitUntil(() => !existsSync(dead), 15_000)).toBe(true);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(path.join(target, "keep.txt"))).toBe(true);
    expect(c.pid).toBeGreaterThan(0);
  });
});

describe("programs the server starts for the sandbox", () => {
  // Attack: the server finds bwrap, nsenter, socat and which on its PATH, and looks them up with the workspace as its
  // current folder. A PATH with "." or a folder inside the workspace (npm run puts <project>/node_modules/.bin first)
  // would run programs the workspace planted, outside the sandbox.
  test("are never taken from the workspace, whatever the PATH says", async () => {
    const planted = path.join(outer, "planted-ran");
    const pws = path.join(outer, "path-ws");
    const bin = path.join(pws, "node_modules", ".bin");
    await fs.mkdir(bin, { recursive: true });
    for (const name of ["bwrap", "nsenter", "socat", "which", "bash", "rg"])
      for (const dir of [bin, pws])
        await fs.writeFile(path.join(dir, name), `#!/bin/sh\necho ${name} >> ${planted}\nexit 1\n`, { mode: 0o755 });
    const c = await connect(["--workspace", pws, "--sandbox", "os"], {
      env: { HOME: home, PATH: `.:${bin}::${process.env.PATH}` },
    });
    cleanup.push(() => c.close());
    const r = await c.call("Run", { command: 'echo "$PATH"' });
    expect((r.structuredContent as { sandboxed: boolean }).sandboxed).toBe(true);
    expect(exitCode(r)).toBe(0);
    const seen = ok(r).split("\n")[0]!.split(":");
    expect(seen.filter((d) => d === "" || d === "." || d.startsWith(pws))).toEqual([]);
    expect(existsSync(planted) ? await fs.readFile(planted, "utf8") : "").toBe("");
  });
});
