import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import type { TaskReport } from "../src/task/records.js";
import { reply, say, ScriptedModel, type Step, use } from "../src/testing/scripted-model.js";
import { connect, tempDir, text, waitUntil } from "./helpers.js";

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

async function serve(ws: string, steps: Step[], args: string[] = []) {
  const model = new ScriptedModel(steps);
  const url = await model.start();
  const conn = await connect(["--workspace", ws, ...args], {
    env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: url, XDG_STATE_HOME: STATE_HOME },
  });
  // A server stuck in a synchronous call cannot run its SIGTERM handler: kill the process this test started.
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
    async () =>
      void (() => {
        try {
          process.kill(conn.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      })(),
  );
  return { model, conn };
}

async function runTask(ws: string, steps: Step[], args: string[] = []) {
  const { model, conn } = await serve(ws, steps, args);
  const result = await conn.call("Task", { description: "attack", prompt: "Do the task." });
  return { model, conn, report: result.structuredContent as unknown as TaskReport, text: text(result) };
}

/** p, or undefined once ms pass (the caller asserts it did not time out). */
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p.catch(() => undefined), new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);

const done = (n = 1) => Array.from({ length: n }, () => reply(say("Done.")));

/**
 * Starts a background Task and polls TaskOutput (each poll must answer within 5 s) until the run ends; the statuses
 * seen, with "no answer" for a poll the server did not answer in time.
 */
async function statusesUntilEnded(conn: Awaited<ReturnType<typeof serve>>["conn"], ms: number): Promise<string[]> {
  const started = await conn.call("Task", { description: "attack", prompt: "Do the task.", run_in_background: true });
  const runId = (started.structuredContent as { run_id: string }).run_id;
  const statuses: string[] = [];
  const settled = async () => {
    const r = await within(conn.call("TaskOutput", { run_id: runId, wait_seconds: 1 }), 5_000);
    statuses.push(r ? String((r.structuredContent as { status?: string }).status) : "no answer");
    return !["queued", "running"].includes(statuses.at(-1)!);
  };
  expect(await waitUntil(settled, ms)).toBe(true);
  return statuses;
}

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

describe("files that block", () => {
  test("a tsconfig.json that is a FIFO does not freeze the server during verification", async () => {
    // Verification type-checks with ts-morph inside the server process when the workspace has no typescript. ts-morph
    // reads tsconfig.json with a synchronous read: on a FIFO that blocks the event loop for good (no reply, no TaskStop,
    // no SIGTERM). A sandboxed command can make the FIFO (mkfifo), and an unpacked archive can hold one.
    const ws = await workspaceWith({ "package.json": JSON.stringify({ name: "p", type: "module" }) });
    execFileSync("mkfifo", [path.join(ws, "tsconfig.json")]);
    const { conn } = await serve(ws, [
      reply(use("Write", { file_path: "src/a.ts", content: "export const a = 1;\n" })),
      ...done(3),
    ]);
    const started = await conn.call("Task", { description: "attack", prompt: "Do the task.", run_in_background: true });
    const runId = (started.structuredContent as { run_id: string }).run_id;
    const status = async () => {
      const r = await within(conn.call("TaskOutput", { run_id: runId, wait_seconds: 1 }), 5_000);
      return r ? (r.structuredContent as { status?: string }).status : "no answer";
    };
    const statuses: (string | undefined)[] = [];
    const settled = async () => {
      statuses.push(await status());
      return !["queued", "running", "no answer"].includes(statuses.at(-1) ?? "") || statuses.at(-1) === "no answer";
    };
    expect(await waitUntil(settled, 30_000)).toBe(true);
    expect(statuses.at(-1)).not.toBe("no answer");
    expect(await within(conn.client.ping(), 5_000)).toBeDefined();
  });
});

/** How many of pid's threads wait in open() for a FIFO's other end. */
function threadsOpeningFifo(pid: number): number {
  const dir = `/proc/${pid}/task`;
  const tids = (() => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  })();
  return tids.filter((tid) => {
    try {
      return readFileSync(`${dir}/${tid}/wchan`, "utf8").includes("wait_for_partner");
    } catch {
      return false;
    }
  }).length;
}

describe("files that block the server's reads", () => {
  test("a FIFO among .claude/agents/*.md neither hangs Task nor starves the server's other file reads", async () => {
    // Agent definitions are read with fs.readFile, which opens a FIFO and waits for a writer in one of libuv's four
    // pool threads. Each Task call parks one; after four, every asynchronous file operation of the server waits.
    const ws = await workspaceWith({ "notes.txt": "hello\n" });
    await fs.mkdir(path.join(ws, ".claude", "agents"), { recursive: true });
    execFileSync("mkfifo", [path.join(ws, ".claude", "agents", "evil.md")]);
    const { conn } = await serve(ws, [...done(8)]);
    const tasks = Array.from({ length: 4 }, () =>
      within(conn.call("Task", { description: "attack", prompt: "Do the task.", run_in_background: true }), 15_000),
    );
    let answeredCount = 0;
    for (const t of tasks) void t.then(() => answeredCount++);
    // Once the Tasks answered, or the server's threads sit opening the FIFO, an ordinary Read must still answer.
    await waitUntil(() => answeredCount === tasks.length || threadsOpeningFifo(conn.pid) >= 4, 10_000);
    const read = await within(conn.call("Read", { file_path: "notes.txt" }), 10_000);
    const answered = await Promise.all(tasks);
    expect(read, "Read of an ordinary file answers").toBeDefined();
    expect(text(read!)).toContain("hello");
    expect(
      answered.filter((t) => t === undefined),
      "Task calls that never answered",
    ).toEqual([]);
  });
});

describe("partner agents from the workspace", () => {
  test("front matter of the wrong types (description: 42, model: [..]) does not break Task", async () => {
    const ws = await workspaceWith({
      ".claude/agents/odd.md": "---\nname: odd\ndescription: 42\nmodel: [a, b]\n---\nYou are odd.\n",
      "notes.txt": "hello\n",
    });
    const { report, text: out } = await runTask(ws, [reply(use("Read", { file_path: "notes.txt" })), ...done()]);
    expect(out).not.toMatch(/TypeError|is not a function/);
    expect(report.status).toBe("unverified");
  });
});

describe("the plugin launcher", () => {
  test("started in a hostile project, it does not run the project's own node_modules/backend-developer-mcp", async () => {
    // Claude Code starts plugin servers in the project folder. Copied from a marketplace, plugin/bin/server.mjs runs
    // `npx -y backend-developer-mcp@<version>`, and npx prefers a matching package in the current project's
    // node_modules (and reads the project's .npmrc): a cloned repository then runs its own code, with no sandbox.
    const installed = await outsideDir();
    await fs.cp(path.resolve(import.meta.dirname, "..", "plugin"), path.join(installed, "plugin"), { recursive: true });
    const version = (
      JSON.parse(await fs.readFile(path.join(installed, "plugin", ".claude-plugin", "plugin.json"), "utf8")) as {
        version: string;
      }
    ).version;
    const marker = path.join(await outsideDir(), "ran");
    const pkgDir = "node_modules/backend-developer-mcp";
    const ws = await workspaceWith({
      [`${pkgDir}/package.json`]: JSON.stringify({
        name: "backend-developer-mcp",
        version,
        bin: { "backend-developer-mcp": "cli.js" },
      }),
      [`${pkgDir}/cli.js`]: `#!/usr/bin/env node\nrequire("node:fs").writeFileSync(${JSON.stringify(marker)}, "the repository's code ran");\n`,
    });
    await fs.chmod(path.join(ws, pkgDir, "cli.js"), 0o755);
    await fs.mkdir(path.join(ws, "node_modules", ".bin"));
    await fs.symlink("../backend-developer-mcp/cli.js", path.join(ws, "node_modules", ".bin", "backend-developer-mcp"));
    // Offline, so the test never reaches the registry: the launcher fails to fetch the real package, and must not fall back on the repository's.
    const run = spawnSync(process.execPath, [path.join(installed, "plugin", "bin", "server.mjs")], {
      cwd: ws,
      env: { ...process.env, npm_config_offline: "true" },
      input: "",
      timeout: 60_000,
    });
    expect(run.error).toBeUndefined();
    expect(existsSync(marker)).toBe(false);
  });
});

describe("verification output", () => {
  test("a check printing one diagnostic line many times does not stall the server while it is parsed", async () => {
    // parseDiagnostics numbers repeats by probing "key (×2)", "key (×3)", … one by one: quadratic in the repeats, on the
    // server's event loop. 1 MB of output (what is read back) is about 125,000 lines: tens of minutes with no reply.
    const lint = `node -e "process.stdout.write('error e\\\\n'.repeat(30000)); process.exit(1)"`;
    const ws = await workspaceWith({ "package.json": JSON.stringify({ name: "p", scripts: { lint } }) });
    const { conn } = await serve(ws, [
      reply(use("Write", { file_path: "src/a.js", content: "export const a = 1;\n" })),
      ...done(3),
    ]);
    expect(await statusesUntilEnded(conn, 60_000)).not.toContain("no answer");
  }, 90_000);
});

describe("the in-process type check", () => {
  test("a tsconfig.json that includes the whole file system does not stall the server", async () => {
    // Without typescript in the workspace, ts-morph builds the tsconfig program in the server's own thread, synchronously.
    // The workspace chooses what it includes: here all of /usr (about 17 s of frozen server on the test machine; a home
    // folder full of node_modules takes minutes, or the memory). Nothing answers meanwhile, TaskStop included.
    const tsconfig = { compilerOptions: { allowJs: true, noEmit: true }, include: ["/usr/**/*"] };
    const ws = await workspaceWith({
      "package.json": JSON.stringify({ name: "p" }),
      "tsconfig.json": JSON.stringify(tsconfig),
    });
    const { conn } = await serve(ws, [
      reply(use("Write", { file_path: "src/a.ts", content: "export const a = 1;\n" })),
      ...done(3),
    ]);
    expect(await statusesUntilEnded(conn, 90_000)).not.toContain("no answer");
  }, 120_000);
});
