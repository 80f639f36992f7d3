import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ElicitRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, test } from "vitest";
import { demoSteps } from "../src/testing/demo.js";
import type { TaskReport } from "../src/task/records.js";
import { Gate, gated, reply, say, use, type Step } from "../src/testing/scripted-model.js";
import { useScriptedServers } from "./fixtures.js";
import { processAlive, text, waitUntil, type Connection } from "./helpers.js";

const servers = useScriptedServers();
const serve = servers.serve;
const setup = (steps: Step[], args: string[] = [], client?: Client) => servers.start(steps, { args, client });

type View = TaskReport & { message: string; activity?: string };
const view = (r: CallToolResult) => {
  if (r.isError) throw new Error(text(r));
  return r.structuredContent as unknown as View;
};

const task = (conn: Connection, args: Record<string, unknown> = {}) =>
  conn.call("Task", { description: "durable test", prompt: "Do the task.", ...args });
const output = (conn: Connection, run_id: string, wait_seconds = 30) =>
  conn.call("TaskOutput", { run_id, wait_seconds });

async function finished(conn: Connection, runId: string): Promise<View> {
  for (;;) {
    const v = view(await output(conn, runId));
    if (v.status !== "running" && v.status !== "queued") return v;
  }
}

describe("background runs", () => {
  test("a Task that outlasts --task-wait returns running, and TaskOutput later returns the same report as a foreground run", async () => {
    const steps = demoSteps();
    const gate = new Gate();
    steps[0] = gated(steps[0]!, gate);
    const { conn } = await setup(steps, ["--task-wait", "1"]);
    const first = view(await task(conn));
    expect(first.status).toBe("running");
    gate.open();
    expect(first.message).toContain(`TaskOutput {run_id: "${first.run_id}"}`);
    const done = await finished(conn, first.run_id);

    const foreground = await setup(demoSteps());
    const reference = view(await task(foreground.conn));
    expect(reference.status).toBe("completed");
    expect(done.status).toBe("completed");
    for (const key of ["files_changed", "turns", "summary", "fix_rounds", "model_calls"] as const)
      expect(done[key]).toEqual(reference[key]);
    const untimed = (v: View) => v.verification?.checks.map(({ duration_ms: _, ...c }) => c);
    expect(untimed(done)).toEqual(untimed(reference));
  });

  test("run_in_background returns at once with a run_id; the listing shows the runs and their total cost", async () => {
    const steps = demoSteps();
    const gate = new Gate();
    steps[0] = gated(steps[0]!, gate);
    const { model, conn } = await setup(steps);
    const started = view(await task(conn, { run_in_background: true }));
    expect(started.status).toMatch(/^(queued|running)$/);
    expect(model.remaining).toBeGreaterThan(0);
    gate.open();
    const done = await finished(conn, started.run_id);
    expect(done.status).toBe("completed");
    expect(done.cost_usd).toBeGreaterThan(0);
    const list = (await conn.call("TaskOutput", {})).structuredContent as {
      runs: { run_id: string; status: string }[];
      totals: { runs: number; cost_usd: number };
    };
    expect(list.runs).toEqual([expect.objectContaining({ run_id: started.run_id, status: "completed" })]);
    expect(list.totals.cost_usd).toBeCloseTo(done.cost_usd, 10);
  });

  test("TaskStop ends a run and leaves no process", async () => {
    const marker = `306.${process.pid}1`;
    const { conn } = await setup([reply(use("Run", { command: `sleep ${marker}` }))]);
    const started = view(await task(conn, { run_in_background: true }));
    const alive = () => processAlive(marker);
    expect(await waitUntil(alive, 10_000)).toBe(true);
    const stopped = view(await conn.call("TaskStop", { run_id: started.run_id }));
    expect(stopped.status).toBe("cancelled");
    expect(await waitUntil(() => !alive(), 5000)).toBe(true);
    expect(view(await output(conn, started.run_id, 0)).status).toBe("cancelled");
  });

  test("after a crash, the in-flight run is reported interrupted and a finished run's report is unchanged", async () => {
    const { ws, model, conn } = await setup(
      [
        ...demoSteps(),
        reply(use("Write", { file_path: "partial.txt", content: "half done\n" })),
        gated(reply(say("never")), new Gate()),
      ],
      ["--sandbox", "off"],
    );
    const done = view(await task(conn));
    expect(done.status).toBe("completed");
    const reportFile = path.join(servers.stateDir(ws), "runs", done.run_id, "report.json");
    const before = await fs.readFile(reportFile, "utf8");
    const inflight = view(await task(conn, { run_in_background: true }));
    expect(await waitUntil(() => existsSync(path.join(ws, "partial.txt")), 10_000)).toBe(true);
    process.kill(conn.pid, "SIGKILL");

    const restarted = await serve(ws, model, ["--sandbox", "off"]);
    const interrupted = view(await output(restarted, inflight.run_id, 0));
    expect(interrupted.status).toBe("interrupted");
    expect(interrupted.files_changed).toEqual([{ path: "partial.txt", status: "added", insertions: 1, deletions: 0 }]);
    expect(interrupted.revert_command).toContain("rm -f -- 'partial.txt'");
    expect(await fs.readFile(reportFile, "utf8")).toBe(before);
    expect(view(await output(restarted, done.run_id, 0))).toEqual({
      ...JSON.parse(before),
      message: expect.any(String),
    });
  });
});

describe("resume and questions", () => {
  test("resume continues the same conversation and verifies again", async () => {
    const { model, conn } = await setup([
      reply(use("Write", { file_path: "a.txt", content: "a\n" })),
      reply(say("Wrote a.")),
      reply(use("Write", { file_path: "b.txt", content: "b\n" })),
      reply(say("Wrote b too.")),
    ]);
    const first = view(await task(conn));
    expect(first.status).toBe("completed");
    const second = view(await conn.call("Task", { resume: first.run_id, prompt: "Also write b.txt." }));
    expect(second.run_id).toBe(first.run_id);
    expect(second.status).toBe("completed");
    expect(second.turns).toBe(4);
    expect(second.files_changed.map((f) => f.path)).toEqual(["a.txt", "b.txt"]);
    const resumed = model.requests[2]!.messages;
    expect(resumed).toHaveLength(5);
    expect(JSON.stringify(resumed[0])).toContain("Do the task.");
    expect(JSON.stringify(resumed[3])).toContain("Wrote a.");
    expect(JSON.stringify(resumed[4])).toContain("Also write b.txt.");
  });

  test("resuming an unknown or running run is a clear error", async () => {
    const steps = demoSteps();
    const gate = new Gate();
    steps[0] = gated(steps[0]!, gate);
    const { conn } = await setup(steps);
    const unknown = await conn.call("Task", { resume: "20990101-000000-abcdef", prompt: "go on" });
    expect(unknown.isError).toBe(true);
    expect(text(unknown)).toContain("No run 20990101-000000-abcdef in this workspace");
    const running = view(await task(conn, { run_in_background: true }));
    const again = await conn.call("Task", { resume: running.run_id, prompt: "go on" });
    expect(text(again)).toContain("is still running");
    gate.open();
    await finished(conn, running.run_id);
  });

  test("AskUserQuestion without elicitation ends as needs_input, and resume carries the answer", async () => {
    const { model, conn } = await setup([
      reply(use("AskUserQuestion", { question: "Which database?", options: ["Postgres", "SQLite"] })),
      reply(say("Using SQLite as asked.")),
    ]);
    const paused = view(await task(conn));
    expect(paused.status).toBe("needs_input");
    expect(paused.question).toEqual({ question: "Which database?", options: ["Postgres", "SQLite"] });
    expect(text(await output(conn, paused.run_id, 0))).toContain("Which database?");
    const resumed = view(await conn.call("Task", { resume: paused.run_id, prompt: "SQLite" }));
    expect(resumed.status).toBe("completed");
    const answer = (model.requests[1]!.messages.at(-1)!.content as { type: string; content?: unknown }[])[0]!;
    expect(answer).toMatchObject({ type: "tool_result", content: "The user answered: SQLite" });
  });

  test("with elicitation the question goes to the user and the run continues with the answer", async () => {
    const client = new Client({ name: "eliciting-client", version: "1.0.0" }, { capabilities: { elicitation: {} } });
    const asked: string[] = [];
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      asked.push(req.params.message);
      return { action: "accept", content: { answer: "Postgres" } };
    });
    const { model, conn } = await setup(
      [
        reply(use("AskUserQuestion", { question: "Which database?", options: ["Postgres", "SQLite"] })),
        reply(say("Using Postgres.")),
      ],
      [],
      client,
    );
    const done = view(await task(conn));
    expect(done.status).toBe("completed");
    expect(asked).toEqual(["Which database?"]);
    const result = (model.requests[1]!.messages.at(-1)!.content as unknown as { content: { text: string }[] }[])[0]!;
    expect(result.content[0]!.text).toBe("The user answered: Postgres");
  });
});

describe("budget and isolation", () => {
  test("a budget of a few cents stops a long run with budget_exhausted, still verified and reported", async () => {
    const turn = (): Step =>
      ({
        ...(reply(use("Glob", { pattern: "*" })) as object),
        usage: { input_tokens: 5000, output_tokens: 1000 },
      }) as Step;
    const { model, conn } = await setup(Array.from({ length: 20 }, turn));
    const r = view(await task(conn, { max_budget_usd: 0.05 }));
    expect(r.status).toBe("budget_exhausted");
    // claude-sonnet-5-5 at $2 / $10 per million tokens: $0.02 a turn, so the third turn crosses $0.05.
    expect(r.turns).toBe(3);
    expect(r.cost_usd).toBeCloseTo(0.06, 10);
    expect(r.verification?.checks.map((c) => c.name)).toEqual(["test"]);
    expect(model.requests).toHaveLength(3);
  });

  test("two runs on one workspace take turns: their edits never interleave", async () => {
    // Each run's command holds until the test opens a gate file; had the second run not waited its turn, it would log its start first.
    const step = (name: string) =>
      reply(
        use("Run", {
          command: `echo start ${name} >> log.txt; until [ -e gate ]; do sleep 0.02; done; echo end ${name} >> log.txt`,
        }),
      );
    const { ws, conn } = await setup(
      [step("A"), reply(say("A done.")), step("B"), reply(say("B done."))],
      ["--sandbox", "off"],
    );
    const [a, b] = await Promise.all([
      task(conn, { run_in_background: true, description: "A" }),
      task(conn, { run_in_background: true, description: "B" }),
    ]);
    expect(await waitUntil(() => existsSync(path.join(ws, "log.txt")), 10_000)).toBe(true);
    await fs.writeFile(path.join(ws, "gate"), "");
    await finished(conn, view(a).run_id);
    await finished(conn, view(b).run_id);
    const log = (await fs.readFile(path.join(ws, "log.txt"), "utf8")).trim().split("\n");
    expect(log.map((l) => l.split(" ")[0])).toEqual(["start", "end", "start", "end"]);
    expect(log[0]!.split(" ")[1]).toBe(log[1]!.split(" ")[1]);
  });

  test("a worktree run leaves the workspace untouched, and its merge command applies the changes", async () => {
    const { ws, conn } = await setup([
      reply(use("Write", { file_path: "src/feature.js", content: "export const feature = true;\n" })),
      reply(say("Added the feature.")),
    ]);
    const r = view(await task(conn, { isolation: "worktree" }));
    expect(r.status).toBe("completed");
    expect(r.isolation).toBe("worktree");
    expect(r.files_changed).toEqual([{ path: "src/feature.js", status: "added", insertions: 1, deletions: 0 }]);
    await expect(fs.access(path.join(ws, "src", "feature.js"))).rejects.toThrow();
    execFileSync("bash", ["-c", r.merge_command!]);
    expect(await fs.readFile(path.join(ws, "src", "feature.js"), "utf8")).toBe("export const feature = true;\n");
  });
});
