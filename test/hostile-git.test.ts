import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import type { TaskReport } from "../src/task/records.js";
import { reply, say, ScriptedModel, use } from "../src/testing/scripted-model.js";
import { connect, ok, tempDir, text, type Connection } from "./helpers.js";

/**
 * Attack first: a workspace names programs through git config, hooks, includes and attributes, in a .git that was
 * there before the server started, in one a sandboxed command planted, and in nested repositories. Every program
 * touches a marker outside the workspace. Task runs (in place and in a worktree), their change lists, and the revert
 * and merge commands they report must run none of them. A control at the end shows the same setup does run them
 * under an ordinary `git` in the workspace, so the test would see a leak.
 */

const hasBwrap = spawnSync("bwrap", ["--version"]).status === 0;
const STATE_HOME = await tempDir("bdm-state-");
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});
afterAll(() => fs.rm(STATE_HOME, { recursive: true, force: true }));

const HOOKS = [
  "pre-commit",
  "post-commit",
  "post-checkout",
  "post-merge",
  "post-index-change",
  "reference-transaction",
  "pre-auto-gc",
  "post-rewrite",
  "pre-push",
  "fsmonitor-watchman",
  "applypatch-msg",
  "pre-applypatch",
  "post-applypatch",
];
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The marker folder (outside the workspace), one program per setting that touches hits/<name>, and an include file. */
async function markers(): Promise<{ dir: string; hits: () => Promise<string[]>; program: (name: string) => string }> {
  const dir = await tempDir("bdm-marks-");
  cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.mkdir(path.join(dir, "bin"));
  await fs.mkdir(path.join(dir, "hits"));
  const program = (name: string) => path.join(dir, "bin", name);
  const names = [
    "filter-clean",
    "filter-smudge",
    "filter-process",
    "textconv",
    "diff-command",
    "diff-external",
    "merge-driver",
    "fsmonitor",
    "pager",
    "pager-diff",
    "editor",
    "sequence-editor",
    "ssh",
    "credential",
    "gpg",
    "gpg-ssh",
    "askpass",
    "include-fsmonitor",
    "include-filter",
    "includeif-fsmonitor",
    "git-on-path",
    ...HOOKS.map((h) => `hook-${h}`),
  ];
  for (const n of names)
    await fs.writeFile(program(n), `#!/bin/sh\ntouch ${q(path.join(dir, "hits", n))}\ncat\n`, { mode: 0o755 });
  await fs.mkdir(path.join(dir, "hooks"));
  for (const h of HOOKS) await fs.symlink(program(`hook-${h}`), path.join(dir, "hooks", h));
  await fs.writeFile(
    path.join(dir, "include.cfg"),
    `[core]\n\tfsmonitor = ${program("include-fsmonitor")}\n[filter "y"]\n\tclean = ${program("include-filter")}\n`,
  );
  await fs.writeFile(path.join(dir, "includeif.cfg"), `[core]\n\tfsmonitor = ${program("includeif-fsmonitor")}\n`);
  return { dir, hits: () => fs.readdir(path.join(dir, "hits")), program };
}

/** Shell commands, run in the repository's work tree, that plant every program-running setting in its .git. */
function plant(m: Awaited<ReturnType<typeof markers>>): string {
  const settings: [string, string][] = [
    ["filter.x.clean", m.program("filter-clean")],
    ["filter.x.smudge", m.program("filter-smudge")],
    ["filter.x.process", m.program("filter-process")],
    ["filter.x.required", "true"],
    ["diff.x.textconv", m.program("textconv")],
    ["diff.x.command", m.program("diff-command")],
    ["diff.external", m.program("diff-external")],
    ["merge.x.driver", m.program("merge-driver")],
    ["core.fsmonitor", m.program("fsmonitor")],
    ["core.hooksPath", path.join(m.dir, "hooks")],
    ["core.pager", m.program("pager")],
    ["pager.diff", m.program("pager-diff")],
    ["core.editor", m.program("editor")],
    ["sequence.editor", m.program("sequence-editor")],
    ["core.sshCommand", m.program("ssh")],
    ["credential.helper", `!${m.program("credential")}`],
    ["gpg.program", m.program("gpg")],
    ["gpg.ssh.program", m.program("gpg-ssh")],
    ["commit.gpgSign", "true"],
    ["core.askPass", m.program("askpass")],
    ["include.path", path.join(m.dir, "include.cfg")],
    ["includeIf.gitdir:/.path", path.join(m.dir, "includeif.cfg")],
  ];
  return [
    "git init -q",
    ...settings.map(([k, v]) => `git config ${q(k)} ${q(v)}`),
    "mkdir -p .git/hooks",
    ...HOOKS.map((h) => `ln -sf ${q(m.program(`hook-${h}`))} .git/hooks/${h}`),
    `printf '* filter=x diff=x merge=x\\n*.y filter=y\\n' > .gitattributes`,
  ].join(" && ");
}

const bash = (command: string, cwd: string) =>
  execFileSync("bash", ["-c", command], { cwd, encoding: "utf8", env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1" } });
const report = (r: CallToolResult) => {
  if (r.isError) throw new Error(text(r));
  return r.structuredContent as unknown as TaskReport;
};

/** A Task in place and one in a worktree, each writing files the attributes name; then their revert and merge commands. */
async function runTasks(conn: Connection, ws: string): Promise<void> {
  const inPlace = report(await conn.call("Task", { description: "in place", prompt: "Write files." }));
  expect(inPlace.error ?? "").toBe("");
  expect(inPlace.status).toBe("unverified"); // no manifest: nothing to verify
  expect(inPlace.files_changed.map((f) => f.path).sort()).toEqual(["a.txt", "b.y", "dir/c.txt"]);
  bash(inPlace.revert_command, "/");
  expect(existsSync(path.join(ws, "a.txt"))).toBe(false);
  const isolated = report(
    await conn.call("Task", { description: "worktree", prompt: "Write files.", isolation: "worktree" }),
  );
  expect(isolated.status).toBe("unverified");
  expect(isolated.files_changed.map((f) => f.path).sort()).toEqual(["a.txt", "b.y", "dir/c.txt"]);
  expect(existsSync(path.join(ws, "a.txt"))).toBe(false);
  bash(isolated.merge_command!, "/");
  expect(await fs.readFile(path.join(ws, "a.txt"), "utf8")).toBe("a\n");
  bash(isolated.revert_command, "/");
}

const steps = () => [
  reply(
    use("Write", { file_path: "a.txt", content: "a\n" }),
    use("Write", { file_path: "b.y", content: "b\n" }),
    use("Write", { file_path: "dir/c.txt", content: "c\n" }),
  ),
  reply(say("Wrote the files.")),
];

async function serve(ws: string, env: Record<string, string> = {}) {
  const model = new ScriptedModel([...steps(), ...steps()]);
  const conn = await connect(["--workspace", ws, "--sandbox", hasBwrap ? "os" : "off"], {
    env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: await model.start(), XDG_STATE_HOME: STATE_HOME, ...env },
  });
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
  );
  await conn.client.listTools();
  return conn;
}

async function workspace(): Promise<string> {
  const ws = await tempDir("bdm-hostile-");
  cleanup.push(() => fs.rm(ws, { recursive: true, force: true }));
  await fs.writeFile(path.join(ws, "README.md"), "hostile\n");
  return ws;
}

/** The same setup does run programs under an ordinary git in the workspace: the planted settings are live. */
function expectLiveUnderPlainGit(cwd: string) {
  spawnSync("git", ["add", "-A"], { cwd, env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1" } });
}

describe("server-side git runs no program the workspace names", () => {
  test("a .git with every program-running setting, there before the server started, and a git on the PATH inside the workspace", async () => {
    const m = await markers();
    const ws = await workspace();
    bash(plant(m), ws);
    await fs.mkdir(path.join(ws, "bin"));
    await fs.copyFile(m.program("git-on-path"), path.join(ws, "bin", "git"));
    const conn = await serve(ws, { PATH: `${path.join(ws, "bin")}:bin:${process.env.PATH}` });
    await runTasks(conn, ws);
    expect(await m.hits()).toEqual([]);
    expectLiveUnderPlainGit(ws);
    expect((await m.hits()).length).toBeGreaterThan(0);
  });

  test.runIf(hasBwrap)(
    "a .git and a nested nested/.git planted by a sandboxed Run in a workspace that was not a repository",
    async () => {
      const m = await markers();
      const ws = await workspace();
      const conn = await serve(ws);
      ok(await conn.call("Run", { command: `mkdir nested && (cd nested && ${plant(m)}) && ${plant(m)}` }));
      expect(existsSync(path.join(ws, ".git", "config"))).toBe(true);
      expect(existsSync(path.join(ws, "nested", ".git", "config"))).toBe(true);
      await runTasks(conn, ws);
      expect(await m.hits()).toEqual([]);
      expectLiveUnderPlainGit(ws);
      expect((await m.hits()).length).toBeGreaterThan(0);
    },
  );

  test("nested repositories (one with a commit, one empty) with every setting", async () => {
    const m = await markers();
    const ws = await workspace();
    await fs.mkdir(path.join(ws, "sub"));
    await fs.writeFile(path.join(ws, "sub", "tracked.txt"), "t\n");
    bash(
      "git init -q && git add tracked.txt && git -c user.name=t -c user.email=t@t commit -qm base",
      path.join(ws, "sub"),
    );
    await fs.mkdir(path.join(ws, "empty"));
    for (const sub of ["sub", "empty"]) bash(plant(m), path.join(ws, sub));
    const conn = await serve(ws);
    await runTasks(conn, ws);
    expect(await m.hits()).toEqual([]);
    expectLiveUnderPlainGit(path.join(ws, "sub"));
    expect((await m.hits()).length).toBeGreaterThan(0);
  });
});

describe("checkpoints follow a tree whose shape changes", () => {
  test("a folder that becomes a file and a link that becomes a folder are listed, and the revert puts them back", async () => {
    const ws = await workspace();
    await fs.mkdir(path.join(ws, "d"));
    await fs.writeFile(path.join(ws, "d", "f"), "f\n");
    await fs.mkdir(path.join(ws, "real"));
    await fs.writeFile(path.join(ws, "real", "x"), "x\n");
    await fs.symlink("real", path.join(ws, "l"));
    const model = new ScriptedModel([
      reply(use("Run", { command: "rm -r d && echo file > d && rm l && mkdir -p l/e && echo y > l/e/f" })),
      reply(say("Reshaped.")),
    ]);
    const conn = await connect(["--workspace", ws, "--sandbox", hasBwrap ? "os" : "off"], {
      env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: await model.start(), XDG_STATE_HOME: STATE_HOME },
    });
    cleanup.push(
      () => model.stop(),
      () => conn.close(),
    );
    const r = report(await conn.call("Task", { description: "reshape", prompt: "Reshape." }));
    expect(r.status).toBe("unverified");
    expect(r.files_changed.map((f) => [f.path, f.status])).toEqual([
      ["d", "added"],
      ["d/f", "deleted"],
      ["l", "deleted"],
      ["l/e/f", "added"],
    ]);
    execFileSync("bash", ["-c", r.revert_command], { cwd: "/" });
    expect(await fs.readFile(path.join(ws, "d", "f"), "utf8")).toBe("f\n");
    expect(await fs.readlink(path.join(ws, "l"))).toBe("real");
  });
});
