// `npm run demo`, the README's first command: the offline replay completes, verified, and cleans up after itself.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { meaningfulProgress } from "../src/testing/demo.js";

const DEMO = path.resolve(import.meta.dirname, "..", "dist", "demo.js");
const exec = promisify(execFile);

async function demo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [DEMO, ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const workspaceOf = (stdout: string) => /^Workspace: (.+)$/m.exec(stdout)?.[1];

describe("npm run demo", () => {
  test("the replay completes, verified by the server, and removes its temporary workspace", async () => {
    const r = await demo([]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\[completed\] Completed: the server's checks passed/);
    expect(r.stdout).toMatch(/- test: passed \([\d.]+ s\): `npm test` in the workspace root/);
    expect(r.stdout).not.toMatch(/… .*duration_ms/);
    expect(existsSync(workspaceOf(r.stdout)!)).toBe(false);
  });

  test("--stack python: the replay is verified with pytest", async () => {
    const r = await demo(["--stack", "python"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\[completed\] Completed: the server's checks passed/);
    expect(r.stdout).toMatch(/- pytest: passed/);
  });

  test("--keep keeps the workspace and says where it is", async () => {
    const r = await demo(["--keep"]);
    const ws = workspaceOf(r.stdout)!;
    expect(r.stdout).toContain(`The workspace is kept: ${ws}`);
    expect(existsSync(path.join(ws, "src", "users.js"))).toBe(true);
    await fs.rm(ws, { recursive: true, force: true });
  });

  test("--help prints usage; an unknown flag is an error (exit 2) and runs nothing", async () => {
    const help = await demo(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: npm run demo --");
    const bad = await demo(["--bogus"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Unknown option '--bogus'");
    expect(bad.stdout).toBe("");
  });

  test("progress skips test-runner bookkeeping and keeps test results", () => {
    for (const noise of [
      "# duration_ms 734.45",
      "running 5s · # tests 3",
      "  duration_ms: 1.2",
      "1..3",
      "  ---",
      "TAP version 13",
    ])
      expect(meaningfulProgress(noise), noise).toBeUndefined();
    for (const line of [
      "ok 1 - GET /users pages through the list",
      "not ok 2 - rejects bad limit",
      "turn 4/40 · Run npm test",
    ])
      expect(meaningfulProgress(line)).toBe(line);
  });
});
