import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import { runStateSchema, taskReportSchema, type RunState, type TaskReport } from "../src/task/records.js";
import { reply, say, ScriptedModel, use, type Step } from "../src/testing/scripted-model.js";
import { stateDirFor } from "../src/task/store.js";
import { connect, fail, ok, tempDir, text, type Connection } from "./helpers.js";

const STATE_HOME = await tempDir("bdm-state-");
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});
afterAll(() => fs.rm(STATE_HOME, { recursive: true, force: true }));

async function scratch(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function serve(ws: string, steps: Step[]): Promise<Connection> {
  const model = new ScriptedModel(steps);
  const conn = await connect(["--workspace", ws], {
    env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: await model.start(), XDG_STATE_HOME: STATE_HOME },
  });
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
  );
  // Listing the tools makes the SDK client validate every structuredContent against the tool's outputSchema.
  await conn.client.listTools();
  return conn;
}

const view = (r: CallToolResult) => {
  if (r.isError) throw new Error(text(r));
  return r.structuredContent as unknown as TaskReport & { message: string };
};
const files = async (dir: string) =>
  (await fs.readdir(dir, { recursive: true })).filter((f) => !f.startsWith(".git")).sort();
const bash = (command: string, cwd: string) => execFileSync("bash", ["-c", command], { cwd, encoding: "utf8" });
const DEAD_PID = 2 ** 22 + 1;

describe("forged run records are validated, listed as unreadable, and never followed", () => {
  test("each kind of forged record is named with its reason; the good runs are still listed", async () => {
    const ws = await scratch("bdm-records-");
    const outside = await scratch("bdm-outside-");
    execFileSync("git", ["init", "-q"], { cwd: outside });
    await fs.writeFile(path.join(outside, "untracked.txt"), "not the workspace's\n");
    const outsideBefore = await files(outside);
    const conn = await serve(ws, [reply(use("Write", { file_path: "f.txt", content: "f\n" })), reply(say("Wrote f."))]);
    const good = view(await conn.call("Task", { description: "good run", prompt: "Write f." }));
    expect(good.status).toBe("unverified"); // a workspace with no manifest: nothing to check

    const state = path.join(stateDirFor(ws, { XDG_STATE_HOME: STATE_HOME }));
    const runs = path.join(state, "runs");
    const goodState = runStateSchema.parse(
      JSON.parse(await fs.readFile(path.join(runs, good.run_id, "state.json"), "utf8")),
    );
    const goodReport = taskReportSchema.parse(
      JSON.parse(await fs.readFile(path.join(runs, good.run_id, "report.json"), "utf8")),
    );
    const forge = async (id: string, records: Record<string, unknown>) => {
      await fs.mkdir(path.join(runs, id), { recursive: true });
      for (const [name, value] of Object.entries(records))
        await fs.writeFile(path.join(runs, id, name), typeof value === "string" ? value : JSON.stringify(value));
    };
    const orphan = (id: string, changes: Partial<Record<keyof RunState, unknown>>) => ({
      ...goodState,
      run_id: id,
      status: "running",
      server_pid: DEAD_PID,
      ...changes,
    });
    const expected: Record<string, RegExp> = {};

    await fs.mkdir(path.join(runs, "not-a-run"));
    expected["not-a-run"] = /not a run id/;
    const linked = await scratch("bdm-linked-run-");
    await fs.writeFile(path.join(linked, "state.json"), JSON.stringify(orphan("20990101-000000-000001", {})));
    await fs.symlink(linked, path.join(runs, "20990101-000000-000001"));
    expected["20990101-000000-000001"] = /symbolic link/;
    await forge("20990101-000000-000002", { "state.json": "{}" });
    expected["20990101-000000-000002"] = /state\.json: kind/;
    await forge("20990101-000000-000003", { "state.json": "[]" });
    expected["20990101-000000-000003"] = /state\.json: .*expected object/;
    await forge("20990101-000000-000004", { "state.json": '{"run_id": ' });
    expected["20990101-000000-000004"] = /state\.json is not valid JSON/;
    await forge("20990101-000000-000005", { "state.json": orphan("20990101-000000-000005", { usage: null }) });
    expected["20990101-000000-000005"] = /state\.json: usage/;
    await forge("20990101-000000-000006", {
      "state.json": { ...goodState, run_id: "20990101-000000-000006" },
      "report.json": { ...goodReport, run_id: "20990101-000000-000006", files_changed: "x", cost_usd: "free" },
    });
    expected["20990101-000000-000006"] = /report\.json: files_changed.*cost_usd|report\.json: cost_usd.*files_changed/;
    await forge("20990101-000000-000007", { "state.json": orphan("20990101-000000-000007", { workdir: outside }) });
    expected["20990101-000000-000007"] = /workdir .* is neither the workspace nor this run's worktree/;
    await forge("20990101-000000-000008", {
      "state.json": orphan("20990101-000000-000008", { checkpoint: `--output=${path.join(outside, "x")}` }),
    });
    expected["20990101-000000-000008"] = /checkpoint: is not a full 40-hex git object id/;
    await forge("20990101-000000-000009", {
      "state.json": orphan("20990101-000000-000009", { checkpoint: "0123456789abcdef0123456789abcdef01234567" }),
    });
    expected["20990101-000000-000009"] = /checkpoint 0123456789abcdef0123456789abcdef01234567 is not a commit/;
    await fs.mkdir(path.join(runs, "20990101-000000-00000a"));
    await fs.symlink(
      path.join(runs, good.run_id, "state.json"),
      path.join(runs, "20990101-000000-00000a", "state.json"),
    );
    expected["20990101-000000-00000a"] = /state\.json is a symbolic link/;
    await forge("20990101-000000-00000b", {
      "state.json": { ...goodState, run_id: "20990101-000000-00000b" },
      "report.json": { ...goodReport, run_id: "../../escape" },
    });
    expected["20990101-000000-00000b"] = /report\.json: run_id: is not a run id/;
    await fs.symlink(outside, path.join(state, "worktrees", "20990101-000000-00000c"));
    await forge("20990101-000000-00000c", {
      "state.json": orphan("20990101-000000-00000c", {
        isolation: "worktree",
        workdir: path.join(state, "worktrees", "20990101-000000-00000c"),
      }),
    });
    expected["20990101-000000-00000c"] = /resolves to .* through a link/;
    // A well-formed report whose stored commands are hostile: listed, but its commands are rebuilt, never echoed.
    await forge("20990101-000000-00000d", {
      "state.json": { ...goodState, run_id: "20990101-000000-00000d", status: "completed" },
      "report.json": {
        ...goodReport,
        run_id: "20990101-000000-00000d",
        revert_command: `touch ${outside}/pwned`,
        merge_command: `touch ${outside}/pwned`,
        transcript: "/etc/passwd",
      },
    });

    const listing = await conn.call("TaskOutput", {});
    const list = listing.structuredContent as {
      runs: { run_id: string }[];
      unreadable: { name: string; reason: string }[];
    };
    expect(list.runs.map((r) => r.run_id).sort()).toEqual([good.run_id, "20990101-000000-00000d"].sort());
    expect(list.unreadable.map((u) => u.name).sort()).toEqual(Object.keys(expected).sort());
    for (const u of list.unreadable) expect(u.reason, u.name).toMatch(expected[u.name]!);
    expect(text(listing)).toContain("[unreadable]");

    for (const id of Object.keys(expected).filter((k) => k !== "not-a-run")) {
      expect(fail(await conn.call("TaskOutput", { run_id: id, wait_seconds: 0 }))).toMatch(
        new RegExp(`Run ${id} is unreadable and is not used: `),
      );
      expect(fail(await conn.call("TaskStop", { run_id: id }))).toMatch(/is unreadable/);
      expect(fail(await conn.call("Task", { resume: id, prompt: "go on" }))).toMatch(/is unreadable/);
    }
    for (const bad of ["../../etc", "x;touch${IFS}pwned;#", "20990101-000000-00000"]) {
      expect(fail(await conn.call("TaskOutput", { run_id: bad }))).toMatch(/run_id.*is not a run id/s);
      expect(fail(await conn.call("TaskStop", { run_id: bad }))).toMatch(/run_id.*is not a run id/s);
      expect(fail(await conn.call("Task", { resume: bad, prompt: "go on" }))).toMatch(/resume.*is not a run id/s);
    }
    const rebuilt = view(await conn.call("TaskOutput", { run_id: "20990101-000000-00000d", wait_seconds: 0 }));
    expect(rebuilt.revert_command).not.toContain("pwned");
    expect(rebuilt.revert_command).toBe(good.revert_command);
    expect(rebuilt.transcript).toBe(path.join(runs, "20990101-000000-00000d", "transcript.jsonl"));

    // Nothing was followed: the outside repository, the --output target and the forged runs are as they were.
    expect(await files(outside)).toEqual(outsideBefore);
    expect(existsSync(path.join(outside, "x"))).toBe(false);
    expect(existsSync(path.join(runs, "20990101-000000-000007", "report.json"))).toBe(false);
    expect(await fs.readdir(linked)).toEqual(["state.json"]);
    expect(view(await conn.call("TaskOutput", { run_id: good.run_id, wait_seconds: 0 })).status).toBe("unverified");
  });
});

/** File names a shell would love to misread. */
const HOSTILE = [
  "semi;touch pwned;#.txt",
  "$(touch pwned2).txt",
  "back`touch pwned3`.txt",
  `quote'"\\.txt`,
  "new\nline.txt",
  "-rf",
  "--source=HEAD",
  "*.txt",
  ":(glob)x",
  " space ",
];

describe("reported commands quote every value", () => {
  test("revert and merge commands with hostile file names do only what they say", async () => {
    const ws = await scratch("bdm-quoting-");
    const modified = "mod $(touch pwned4) ;.txt";
    await fs.writeFile(path.join(ws, modified), "original\n");
    await fs.writeFile(path.join(ws, "keep.txt"), "keep\n");
    const writes = () => HOSTILE.map((name) => use("Write", { file_path: name, content: `${name}\n` }));
    const conn = await serve(ws, [
      reply(use("Read", { file_path: modified })),
      reply(use("Write", { file_path: modified, content: "changed\n" }), ...writes()),
      reply(say("Done.")),
      reply(...writes()),
      reply(say("Done in the worktree.")),
    ]);
    const elsewhere = await scratch("bdm-cwd-");

    const inPlace = view(await conn.call("Task", { description: "hostile names", prompt: "Write them." }));
    expect(inPlace.files_changed.map((f) => f.path).sort()).toEqual([...HOSTILE, modified].sort());
    bash(inPlace.revert_command, elsewhere);
    expect(await files(ws)).toEqual(["keep.txt", modified].sort());
    expect(await fs.readFile(path.join(ws, modified), "utf8")).toBe("original\n");
    expect(await files(elsewhere)).toEqual([]);

    const isolated = view(
      await conn.call("Task", { description: "hostile worktree", prompt: "Write them.", isolation: "worktree" }),
    );
    expect(isolated.files_changed.map((f) => f.path).sort()).toEqual([...HOSTILE].sort());
    expect(await files(ws)).toEqual(["keep.txt", modified].sort());
    bash(isolated.merge_command!, elsewhere);
    for (const name of HOSTILE) expect(await fs.readFile(path.join(ws, name), "utf8")).toBe(`${name}\n`);
    expect(await files(ws)).toEqual(["keep.txt", modified, ...HOSTILE].sort());
    const worktree = path.join(stateDirFor(ws, { XDG_STATE_HOME: STATE_HOME }), "worktrees", isolated.run_id);
    expect(existsSync(worktree)).toBe(true);
    bash(isolated.revert_command, elsewhere);
    expect(existsSync(worktree)).toBe(false);
    expect(await files(ws)).toEqual(["keep.txt", modified, ...HOSTILE].sort());
    expect(await files(elsewhere)).toEqual([]);
    ok(await conn.call("TaskOutput", {}));
  });
});

describe("the state folder stays out of the workspace", () => {
  test("a state folder inside the workspace, or a workspace inside the state folder, is refused with what to do", async () => {
    const ws = await scratch("bdm-holds-state-");
    const inside = await connect(["--workspace", ws], { env: { XDG_STATE_HOME: path.join(ws, "state") } });
    cleanup.push(() => inside.close());
    expect(fail(await inside.call("TaskOutput", {}))).toMatch(
      /would be inside the workspace, .*Set XDG_STATE_HOME to a folder outside/,
    );
    const nested = path.join(STATE_HOME, "backend-developer-mcp", "ws");
    await fs.mkdir(nested, { recursive: true });
    const within = await connect(["--workspace", nested], { env: { XDG_STATE_HOME: STATE_HOME } });
    cleanup.push(() => within.close());
    expect(fail(await within.call("TaskOutput", {}))).toMatch(
      /is inside the server's state folder .*choose a workspace outside it/,
    );
  });
});
