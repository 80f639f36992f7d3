// Benchmark: the server's own time per Task agent turn, and the fixed context (system prompt + tool definitions) it
// sends with every turn. The model is the scripted Messages API stand-in (src/testing/scripted-model.ts, exported by
// the built dist/demo.js), so the model's answer costs next to nothing; needs `npm run build` first.
// Usage: import { measureTaskTurns } from "./task-turns.mjs"; await measureTaskTurns({ root, quick })
// or standalone: node bench/task-turns.mjs [--quick]
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

/** Characters per token assumed for the fixed context: no Claude tokenizer is installed (see notes). */
// Conservative: English prose runs about 3.5-4 characters per token, JSON schemas fewer.
const CHARS_PER_TOKEN = 3;

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const round = (n, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

/** A small workspace: an ESM package with node --test (as the demo's), a few small files to Read and Glob. */
async function workspace() {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "bdm-bench-turns-")));
  const pkg = {
    name: "bench-turns",
    version: "1.0.0",
    type: "module",
    private: true,
    scripts: { test: "node --test" },
  };
  await fs.writeFile(path.join(dir, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
  await fs.mkdir(path.join(dir, "src"));
  for (let i = 0; i < 10; i++)
    await fs.writeFile(
      path.join(dir, "src", `mod${i}.js`),
      Array.from({ length: 40 }, (_, j) => `export const value${j} = ${i * 100 + j}; // line ${j + 1}`).join("\n"),
    );
  return dir;
}

/** A run of `turns` model turns, each one cheap tool call (Read of a small file or Glob), then a final answer. */
function steps({ reply, say, use }, turns) {
  const calls = Array.from({ length: turns - 1 }, (_, i) =>
    reply(
      i % 2 === 0
        ? use("Read", { file_path: `src/mod${(i / 2) % 10}.js` })
        : use("Glob", { pattern: `src/mod${((i - 1) / 2) % 10}*.js` }),
    ),
  );
  return [...calls, reply(say("Read the modules; nothing to change."))];
}

/** Starts the built server over stdio on ws, its Task model the scripted one at baseUrl. */
async function serve(root, ws, baseUrl, stateHome) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [path.join(root, "dist", "cli.js"), "--workspace", ws],
    env: { ...process.env, ANTHROPIC_API_KEY: "bench-key", ANTHROPIC_BASE_URL: baseUrl, XDG_STATE_HOME: stateHome },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d) => (stderr += d));
  const client = new Client({ name: "bench-task-turns", version: "1.0.0" });
  await client.connect(transport);
  return { client, stderr: () => stderr };
}

/** One Task of `turns` turns; the per-turn gaps (ms) between an answer sent and the next request received, minus the tools' time. */
async function oneTask(dist, root, turns) {
  const ws = await workspace();
  const stateHome = await fs.mkdtemp(path.join(os.tmpdir(), "bdm-bench-state-"));
  const model = new dist.ScriptedModel(steps(dist, turns));
  let conn;
  try {
    conn = await serve(root, ws, await model.start(), stateHome);
    const r = await conn.client.callTool(
      { name: "Task", arguments: { description: "bench turns", prompt: "Read the modules.", max_turns: turns + 5 } },
      undefined,
      { timeout: 10 * 60_000 },
    );
    const report = r.structuredContent;
    if (r.isError || report?.turns !== turns)
      throw new Error(`the bench Task did not run as scripted: ${JSON.stringify(r.content)}\n${conn.stderr()}`);
    const transcript = (await fs.readFile(report.transcript, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const toolMs = new Map();
    for (const e of transcript)
      if (e.type === "tool") toolMs.set(e.turn, (toolMs.get(e.turn) ?? 0) + (e.duration_ms ?? Number.NaN));
    const t = model.timings;
    const gaps = [];
    // Turn k's answer is request k-1's reply; its tools ran before request k.
    for (let k = 1; k < t.length; k++) gaps.push(t[k].arrived - t[k - 1].answered - (toolMs.get(k) ?? 0));
    const tools = [...toolMs.values()];
    return { gaps, tools, request: model.requests.at(-1) };
  } finally {
    await conn?.client.close().catch(() => undefined);
    await model.stop();
    await fs.rm(ws, { recursive: true, force: true });
    await fs.rm(stateHome, { recursive: true, force: true });
  }
}

/** System prompt and tool definitions as sent (cache_control markers left out). */
function fixedContext(request) {
  const system = (request.system ?? []).map((b) => b.text).join("\n\n");
  const tools = (request.tools ?? []).map(({ cache_control: _, ...t }) => t);
  const chars = system.length + JSON.stringify(tools).length;
  return { chars, tokens: Math.ceil(chars / CHARS_PER_TOKEN), systemChars: system.length, tools: tools.length };
}

/**
 * Measures the server's own time per Task turn through a real MCP client over stdio, and the fixed context per turn.
 * root: the package root (with a built dist/); quick: fewer and shorter runs.
 */
export async function measureTaskTurns({ root = path.resolve(import.meta.dirname, ".."), quick = false } = {}) {
  const dist = await import(pathToFileURL(path.join(root, "dist", "demo.js")).href);
  const load = os.loadavg()[0];
  const turns = quick ? 30 : 50;
  const runs = quick ? 2 : 4;
  const gaps = [];
  const tools = [];
  let request;
  // The first run warms up the server's code paths (lazy imports, JIT); only the others are measured.
  await oneTask(dist, root, 5);
  for (let i = 0; i < runs; i++) {
    const r = await oneTask(dist, root, turns);
    gaps.push(...r.gaps);
    tools.push(...r.tools);
    request = r.request;
  }
  if (gaps.some(Number.isNaN)) throw new Error("a tool record in the transcript has no duration_ms");
  const sorted = [...gaps].sort((a, b) => a - b);
  const ctx = fixedContext(request);
  const toolSorted = [...tools].sort((a, b) => a - b);
  return {
    turnOverheadMs: { p50: round(quantile(sorted, 0.5)), p95: round(quantile(sorted, 0.95)), n: sorted.length },
    fixedContextTokens: ctx.tokens,
    fixedContextChars: ctx.chars,
    notes: [
      `${runs} Tasks of ${turns} turns each (after a 5-turn warm-up Task), each turn one Read of a 40-line file or one Glob; model: the scripted Messages API (streamed answers) on loopback in this process.`,
      "Turn overhead = time from the scripted server finishing an answer (response 'finish') to it having received the whole next request body, minus the tool's own time; " +
        "it includes the SDK parsing the stream, transcript/state/conversation records, progress notes, context bookkeeping, serialising and sending the next request.",
      `Tool time subtracted: duration_ms of each tool record in the run's transcript (callTool around the tool: input validation and the tool's work); p50 ${round(quantile(toolSorted, 0.5))} ms, p95 ${round(quantile(toolSorted, 0.95))} ms.`,
      `Fixed context: the system prompt text (${ctx.systemChars} chars, with the workspace's checks brief and web note) plus the ${ctx.tools} tool definitions as JSON (name, description, input_schema, server tools), taken from the last request the scripted server received.`,
      `Machine: ${os.cpus().length} CPUs, 1-minute load average ${load.toFixed(1)} at the start (the figures move with other load).`,
      `Tokens estimated conservatively as chars / ${CHARS_PER_TOKEN} (no Claude tokenizer is installed; the API's count_tokens needs a live key); at 3.5 characters per token it would be ${Math.ceil(ctx.chars / 3.5)}.`,
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const result = await measureTaskTurns({ quick: process.argv.includes("--quick") });
  console.log(JSON.stringify(result, null, 2));
}
