import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import type { TaskReport } from "../src/task/records.js";
import { reply, say, ScriptedModel, type Step, use } from "../src/testing/scripted-model.js";
import { connect, tempDir, text } from "./helpers.js";

/**
 * Attacks from a security review, each asserting the safe behaviour. Every byte of the workspace and every tool
 * argument is hostile; the server's own actions (outside the sandbox) must never land outside the workspace.
 */

const STATE_HOME = await tempDir("bdm-attack-state-");
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});
afterAll(() => fs.rm(STATE_HOME, { recursive: true, force: true }));

async function workspaceWith(files: Record<string, string>): Promise<string> {
  const ws = await tempDir("bdm-attack-ws-");
  cleanup.push(() => fs.rm(ws, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(ws, name)), { recursive: true });
    await fs.writeFile(path.join(ws, name), content);
  }
  return ws;
}

async function outsideDir(): Promise<string> {
  const dir = await tempDir("bdm-attack-outside-");
  cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function runTask(ws: string, steps: Step[], args: string[] = []) {
  const model = new ScriptedModel(steps);
  const url = await model.start();
  const conn = await connect(["--workspace", ws, ...args], { env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: url, XDG_STATE_HOME: STATE_HOME } });
  cleanup.push(() => model.stop(), () => conn.close());
  const result = await conn.call("Task", { description: "attack", prompt: "Do the task." });
  return { model, conn, report: result.structuredContent as unknown as TaskReport, text: text(result) };
}

const done = (n = 1) => Array.from({ length: n }, () => reply(say("Done.")));

describe("verification baseline", () => {
  test("a project folder that was a symbolic link at the checkpoint does not make the server link dependencies outside", async () => {
    // At the checkpoint `sub` is a link to a folder outside the workspace. The (hostile) agent replaces it with a real
    // project whose test fails, so the server computes a baseline: it writes the checkpoint out (where `sub` is the link
    // again) and links `sub/node_modules` into the copy — through the link, i.e. into the outside folder.
    const outside = await outsideDir();
    const ws = await workspaceWith({ "README.md": "# repo\n" });
    await fs.symlink(outside, path.join(ws, "sub"), "dir");
    const pkg = JSON.stringify({ name: "sub", scripts: { test: "exit 1" } });
    const script = `rm sub && mkdir -p sub/node_modules/evil && printf '%s' '${pkg}' > sub/package.json && echo 'module.exports = 1' > sub/node_modules/evil/index.js`;
    const { report } = await runTask(ws, [reply(use("Run", { command: script })), ...done(4)]);
    expect(report.verification?.checks.map((c) => [c.project, c.name])).toContainEqual(["sub", "test"]);
    // The server ran outside the sandbox: a node_modules link in (say) the home folder would feed every node program there.
    expect(await fs.readdir(outside)).toEqual([]);
  });
});
