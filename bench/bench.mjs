// Benchmark: this MCP server side by side with @modelcontextprotocol/server-filesystem (and `claude mcp serve`
// when installed), raw ripgrep and plain `bash -c`. Usage: npm run bench [-- --quick] [-- --json PATH]
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { rgPath } from "@vscode/ripgrep";
import { otherNodes } from "../scripts/other-nodes.mjs";
import { Targets } from "./targets.mjs";
import { ensureTree, MARKERS, SEED, writeEditFiles } from "./tree.mjs";

const ROOT = path.resolve(import.meta.dirname, "..");
const { values: opts } = parseArgs({
  options: { quick: { type: "boolean", default: false }, json: { type: "string" } },
});
const QUICK = opts.quick;
const N = QUICK
  ? { cold: 3, calls: 30, edits: 30, warm: 5, grep: 3, run: 10, drain: 200_000_000 }
  : { cold: 10, calls: 300, edits: 300, warm: 10, grep: 15, run: 30, drain: 2_000_000_000 };
const PATTERNS = { common: "handleRequest", rare: "quuxFrobnicator", regex: String.raw`fetch[A-Z]\w+\(\w+, \d{3}\)` };
const RG_BASE = ["--no-config", "--hidden", "--glob", "!.git", "--no-require-git", "--no-messages"]; // src/tools/grep.ts

// ---------- measuring ----------
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const pct = (xs, p) => sorted(xs)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
const median = (xs) => pct(xs, 50);
async function time(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}
/** Runs n rounds of fns, alternating (and rotating the order) so that machine noise hits all alike; one list of times per fn. */
async function interleaved(n, fns) {
  const out = fns.map(() => []);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < fns.length; j++) {
      const k = (i + j) % fns.length;
      out[k].push(await time(fns[k]));
    }
  }
  return out;
}
const peakRss = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) * 1024;

/** Starts a server; resolves once initialize and tools/list are answered, with both times. */
async function connect(peer, extraArgs = []) {
  const transport = new StdioClientTransport({
    command: peer.command,
    args: [...peer.args, ...extraArgs],
    env: peer.env,
    cwd: tree.dir,
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  const client = new Client({ name: "bench", version: "1.0.0" });
  const t0 = performance.now();
  await client.connect(transport).catch((e) => {
    throw new Error(`${peer.name} did not start: ${e.message}\n${stderr}`);
  });
  const initMs = performance.now() - t0;
  const { tools } = await client.listTools();
  const listMs = performance.now() - t0;
  const call = async (name, args, timeout = 60_000) => {
    const res = await client.callTool({ name, arguments: args }, undefined, { timeout });
    if (res.isError)
      throw new Error(`${peer.name} ${name} ${JSON.stringify(args).slice(0, 200)} failed: ${res.content?.[0]?.text}`);
    return res;
  };
  return {
    peer,
    pid: transport.pid,
    tools: tools.map((t) => t.name),
    initMs,
    listMs,
    call,
    close: () => client.close(),
  };
}

function spawnDrain(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "ignore"], ...options });
    let bytes = 0;
    child.stdout.on("data", (d) => (bytes += d.length));
    child.on("error", reject);
    child.on("close", (code) => (code > 1 ? reject(new Error(`${command} exited with ${code}`)) : resolve(bytes)));
  });
}

// ---------- results ----------
const results = {};
const targets = new Targets();
const MB = 1048576;
const ms = (v) => `${v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2)} ms`;
const mb = (v) => `${(v / 1048576).toFixed(0)} MB`;
function row(measure, ours, vs, peer, fmt = ms) {
  results[`${measure} | ${vs}`] = { ours, vs, peer };
  const ratio = peer ? `${(ours / peer).toFixed(2)}×` : "";
  return `| ${measure} | ${fmt(ours)} | ${vs} | ${peer === undefined ? "–" : fmt(peer)} | ${ratio} |`;
}

// ---------- benchmarks ----------
async function coldStarts(all) {
  const init = all.map(() => []),
    list = all.map(() => []);
  for (let i = 0; i < N.cold; i++) {
    for (const [k, peer] of all.entries()) {
      const s = await connect(peer);
      init[k].push(s.initMs);
      list[k].push(s.listMs);
      await s.close();
    }
  }
  return all.map((_, k) => ({ init: median(init[k]), list: median(list[k]) }));
}

/** Reads small.ts and big.ts, then edits a private copy of each, with all servers open and calls interleaved. */
async function readEdit(all) {
  const sessions = [];
  for (const peer of all) sessions.push(await connect(peer));
  const editDirs = sessions.map((_, k) => path.join(tree.dir, "bench-edit", String(k)));
  writeEditFiles([tree.dir, ...editDirs]);
  const out = sessions.map(() => ({}));
  const q = (times, ...ps) => Object.fromEntries(ps.map((p) => [`p${p}`, pct(times, p)]));
  // A peer that refuses a file (Claude Code reads at most 256 KB) is left out of that measurement, with its reason.
  const accepting = async (key, ks, probe) => {
    const ok = [];
    for (const k of ks)
      await probe(k).then(
        () => ok.push(k),
        (e) => (out[k][key] = { refused: e.message.replace(/^.*? failed: /, "").slice(0, 80) }),
      );
    return ok;
  };
  const everyone = sessions.map((_, k) => k);
  for (const file of ["small.ts", "big.ts"]) {
    const reads = sessions.map((s) => () => s.call(...s.peer.read(path.join(tree.dir, file))));
    const ks = await accepting(`Read ${file}`, everyone, (k) => reads[k]());
    await interleaved(
      N.warm,
      ks.map((k) => reads[k]),
    );
    const times = await interleaved(
      N.calls,
      ks.map((k) => reads[k]),
    );
    for (const [i, k] of ks.entries())
      out[k][`Read ${file}`] = { ...q(times[i], 50, 95, 99), chars: JSON.stringify(await reads[k]()).length };
  }
  for (const file of ["small.ts", "big.ts"]) {
    const edits = [];
    // ours and Claude Code refuse to edit a file not read in the session
    const ks = await accepting(`Edit ${file}`, everyone, (k) =>
      sessions[k].call(...sessions[k].peer.read(path.join(editDirs[k], file))),
    );
    for (const k of ks) {
      const abs = path.join(editDirs[k], file);
      let i = 0;
      const marker = () => `BENCH_MARKER = ${MARKERS[i % 2]}`;
      edits.push(() => {
        const old = marker();
        i++;
        return sessions[k].call(...sessions[k].peer.edit(abs, old, marker()));
      });
    }
    await interleaved(N.warm, edits);
    const times = await interleaved(N.edits, edits);
    ks.forEach((k, i) => (out[k][`Edit ${file}`] = q(times[i], 50, 95)));
  }
  for (const [k, s] of sessions.entries()) {
    out[k].rss = peakRss(s.pid);
    await s.close();
  }
  return out;
}

async function grepVsRg(ours) {
  const lines = [];
  for (const [label, pattern] of Object.entries(PATTERNS)) {
    for (const [mode, flags] of [
      ["content", ["--json"]],
      ["files_with_matches", ["--files-with-matches", "--null"]],
    ]) {
      const rgArgs = [...RG_BASE, ...flags, "-e", pattern, "--"];
      const fns = [
        () => ours.call("Grep", { pattern, output_mode: mode }),
        () => spawnDrain(rgPath, rgArgs, { cwd: tree.dir }),
      ];
      await interleaved(2, fns);
      const [oursMs, rgMs] = (await interleaved(N.grep, fns)).map(median);
      const rgBytes = await spawnDrain(rgPath, rgArgs, { cwd: tree.dir });
      lines.push(
        row(`Grep ${mode} ${label} \`${pattern}\` (rg out ${(rgBytes / 1024).toFixed(0)} KB)`, oursMs, "raw rg", rgMs),
      );
      targets.add(`Grep ${mode} ${label} p50 vs raw rg`, oursMs / rgMs, 1.1);
    }
  }
  return lines;
}

async function runOverhead(ours, sandbox) {
  const first = await ours.call("Run", { command: "true" });
  if (!first.structuredContent?.sandboxed && sandbox !== "off")
    return [`| Run \`true\` (--sandbox ${sandbox}) | not sandboxed: ${first.content[0].text.slice(-80)} | | | |`];
  const fns = [() => ours.call("Run", { command: "true" }), () => spawnDrain("bash", ["-c", "true"])];
  await interleaved(3, fns);
  const [oursMs, bashMs] = (await interleaved(N.run, fns)).map(median);
  if (sandbox !== "off") targets.add("Run `true` sandboxed p50 vs bash -c true", oursMs / bashMs, 3);
  return [
    row(`Run \`true\` (--sandbox ${sandbox}${sandbox === "off" ? "" : ", sandboxed"})`, oursMs, "bash -c true", bashMs),
  ];
}

/** Cold starts of ours and the peer, both run by each other Node major. */
async function otherNodeColdStarts(oursPeer, peer) {
  const lines = [];
  for (const { major, node } of otherNodes) {
    const name = `Cold start → initialize vs server-filesystem, Node ${major}`;
    if (!fs.existsSync(node)) {
      targets.missing(name, 0.6, "×", `no Node ${major} at ${path.relative(ROOT, node)} (.ci/run installs it)`);
      continue;
    }
    const version = spawnSync(node, ["--version"], { encoding: "utf8" }).stdout.trim();
    const [a, b] = await coldStarts([
      { ...oursPeer, command: node },
      { ...peer, command: node },
    ]);
    targets.add(`Cold start → initialize vs server-filesystem, Node ${version}`, a.init / b.init, 0.6);
    lines.push(row(`Cold start → initialize answered (Node ${version})`, a.init, peer.name, b.init));
    lines.push(row(`Cold start → tools/list answered (Node ${version})`, a.list, peer.name, b.list));
  }
  return lines;
}

/** The server's own time per agent turn and the fixed context of each turn (bench/task-turns.mjs). */
async function taskTurns(rss) {
  const { measureTaskTurns } = await import("./task-turns.mjs");
  const r = await measureTaskTurns({ root: ROOT, quick: QUICK });
  if (r.rss) rss.push(r.rss);
  notes.push(...r.notes);
  targets.add("Task: server's own time per agent turn, p50", r.turnOverheadMs.p50, 10, "ms");
  targets.add("Task: fixed context per turn (system prompt + tool definitions)", r.fixedContextTokens, 6000, "tokens");
  return [
    row(
      `Task: server's own time per agent turn p50 (${r.turnOverheadMs.n} turns)`,
      r.turnOverheadMs.p50,
      "",
      undefined,
    ),
    row("Task: server's own time per agent turn p95", r.turnOverheadMs.p95, "", undefined),
    `| Task: fixed context per turn | ${r.fixedContextTokens} tokens (${r.fixedContextChars} chars) | | – | |`,
  ];
}

/**
 * The floor of any per-command bubblewrap sandbox with the namespaces ours uses (user, pid, network) and the runtime's
 * seccomp helper, run directly with no server, scan or rules: what a sandboxed command costs at the very least.
 */
async function sandboxFloor() {
  const require = createRequire(path.join(ROOT, "package.json"));
  const runtime = path.dirname(require.resolve("@anthropic-ai/sandbox-runtime/package.json"));
  const arch = { x64: "x64", arm64: "arm64" }[process.arch];
  const seccomp = path.join(runtime, "vendor", "seccomp", arch ?? "", "apply-seccomp");
  if (!arch || !fs.existsSync(seccomp)) return [`| Sandbox floor | no seccomp helper for ${process.arch} | | | |`];
  const bwrap = ["--new-session", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-pid"];
  const args = [...bwrap, "--unshare-user", "--unshare-net", "--cap-drop", "ALL", "--proc", "/proc", "--"];
  const fns = [
    () => spawnDrain("bwrap", [...args, seccomp, "/bin/bash", "-c", "true"]),
    () => spawnDrain("bash", ["-c", "true"]),
  ];
  await interleaved(3, fns);
  const [floorMs, bashMs] = (await interleaved(N.run, fns)).map(median);
  return [row("Floor: bare bwrap + seccomp helper running `true`, no server", floorMs, "bash -c true", bashMs)];
}

async function drain(peer) {
  const command = `head -c ${N.drain} /dev/zero | tr '\\0' y`;
  const s = await connect(peer);
  const oursMs = await time(() => s.call("Run", { command, timeout: 600_000 }, 660_000));
  const rss = peakRss(s.pid);
  await s.close();
  const rawMs = await time(() => spawnDrain("bash", ["-c", command]));
  targets.add(`Server peak RSS while a command prints ${N.drain / 1e6} MB`, rss / MB, 200, "MB");
  return [
    row(`Run draining ${N.drain / 1e6} MB: wall time`, oursMs, "bash → node pipe", rawMs),
    row(`Run draining ${N.drain / 1e6} MB: server peak RSS`, rss, "", undefined, mb),
  ];
}

// ---------- main ----------
const started = performance.now();
const tree = ensureTree(QUICK);
const which = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const fileTools = (name, command, args, env) => ({
  name,
  command,
  args,
  env,
  read: (abs) => ["Read", { file_path: abs }],
  edit: (abs, old_string, new_string) => ["Edit", { file_path: abs, old_string, new_string }],
});
const ours = fileTools("ours", process.execPath, [path.join(ROOT, "dist/cli.js"), "--workspace", tree.dir]);
const oursOff = { ...ours, args: [...ours.args, "--sandbox", "off"] };
const peers = [
  {
    name: "server-filesystem",
    command: process.execPath,
    args: [path.join(ROOT, "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"), tree.dir],
    read: (abs) => ["read_text_file", { path: abs }],
    edit: (abs, oldText, newText) => ["edit_file", { path: abs, edits: [{ oldText, newText }] }],
  },
];
const notes = [];
if (which("claude")) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "bench-claude-home-"));
  peers.push(fileTools("claude mcp serve", "claude", ["mcp", "serve"], { ...process.env, HOME: home }));
} else notes.push("claude not installed: skipped");
notes.forEach((n) => console.log(n));
console.log(
  `tree: ${tree.dir} (${tree.files} files, ${mb(tree.bytes)}${tree.cached ? ", cached" : ", generated"}); ${QUICK ? "quick" : "full"} run`,
);

const lines = [];
try {
  const probe = await connect(peers[0]);
  await probe.close();
  if (!probe.tools.includes("read_text_file") || !probe.tools.includes("edit_file"))
    throw new Error(`server-filesystem tools changed: ${probe.tools.join(", ")}`);

  console.log("cold starts…");
  const [coldOurs, ...cold] = await coldStarts([oursOff, ...peers]);
  targets.add(
    `Cold start → initialize vs server-filesystem, Node ${process.version}`,
    coldOurs.init / cold[0].init,
    0.6,
  );
  lines.push(...(await otherNodeColdStarts(oursOff, peers[0])));
  console.log("read/edit…");
  const [rwOurs, ...rw] = await readEdit([oursOff, ...peers]);
  for (const [k, p] of peers.entries()) {
    lines.push(row("Cold start → initialize answered", coldOurs.init, p.name, cold[k].init));
    lines.push(row("Cold start → tools/list answered", coldOurs.list, p.name, cold[k].list));
    for (const key of ["Read small.ts", "Read big.ts", "Edit small.ts", "Edit big.ts"]) {
      const theirs = rw[k][key];
      if (theirs.refused)
        lines.push(`| ${key} p50 | ${ms(rwOurs[key].p50)} | ${p.name} | refused: ${theirs.refused} | |`);
      else
        for (const q of key.startsWith("Read") ? ["p50", "p95", "p99"] : ["p50", "p95"])
          lines.push(row(`${key} ${q}`, rwOurs[key][q], p.name, theirs[q]));
      if (k === 0) targets.add(`${key} p50 vs server-filesystem`, rwOurs[key].p50 / theirs.p50, 1.2);
    }
    lines.push(row("Peak RSS after reads + edits", rwOurs.rss, p.name, rw[k].rss, mb));
    notes.push(
      `Read result size (JSON chars) vs ${p.name}: small.ts ${rwOurs["Read small.ts"].chars} vs ${rw[k]["Read small.ts"].chars ?? "–"}, big.ts ${rwOurs["Read big.ts"].chars} vs ${rw[k]["Read big.ts"].chars ?? "–"}.`,
    );
  }
  const rss = [rwOurs.rss];
  notes.push(
    "Servers run side by side with calls interleaved; each edits its own identical copy of small.ts / big.ts (under bench-edit/), so one server's edit never invalidates another's Read.",
  );
  notes.push(
    "Ours returns at most 2000 lines / 80k chars per Read (big.ts: the first page, with a note to continue); server-filesystem returns the whole file, twice (content and structuredContent). Figures are as-is.",
  );

  console.log("grep…");
  const grepSession = await connect(oursOff);
  lines.push(...(await grepVsRg(grepSession)));
  console.log("run…");
  lines.push(...(await runOverhead(grepSession, "off")));
  rss.push(peakRss(grepSession.pid));
  lines.push(row("Peak RSS after Grep + Run session", rss.at(-1), "", undefined, mb));
  await grepSession.close();
  if (which("bwrap")) {
    const sandboxed = await connect(ours, ["--sandbox", "auto"]);
    lines.push(...(await runOverhead(sandboxed, "auto")));
    rss.push(peakRss(sandboxed.pid));
    await sandboxed.close();
    lines.push(...(await sandboxFloor()));
  } else {
    notes.push("bwrap not on PATH: sandboxed Run skipped");
    targets.missing("Run `true` sandboxed p50 vs bash -c true", 3, "×", "bwrap not on PATH");
  }
  console.log("task turns…");
  lines.push(...(await taskTurns(rss)));
  targets.add("Server peak RSS through the bench (each session)", Math.max(...rss) / MB, 150, "MB");
  lines.push(...(await drain(oursOff)));
} catch (e) {
  console.error(`bench aborted: ${e.message}`);
  process.exit(1);
}

const cpus = os.cpus();
const machine = {
  cores: cpus.length,
  cpu: cpus[0]?.model,
  memory: mb(os.totalmem()),
  node: process.version,
  kernel: os.release(),
  rg: spawnSync(rgPath, ["--version"]).stdout.toString().split("\n")[0],
};
const totalS = (performance.now() - started) / 1000;
console.log(`\n## backend-developer-mcp bench (${QUICK ? "quick" : "full"}, ${new Date().toISOString()})\n`);
console.log(
  `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memory} RAM, Node ${machine.node}, Linux ${machine.kernel}, ${machine.rg}`,
);
console.log(
  `Tree: ${tree.files} files, ${mb(tree.bytes)}; medians unless marked p95/p99; ${N.calls} reads, ${N.edits} edits, ${N.cold} cold starts, ${N.grep} greps, ${N.run} runs each.\n`,
);
console.log("| Measure | ours | vs | peer | ours/peer |\n|---|---:|---|---:|---:|");
console.log(lines.join("\n"));
console.log(`\n${targets.render()}`);
console.log(`\n${notes.map((n, i) => `${i + 1}. ${n}`).join("\n")}\n\nTotal ${totalS.toFixed(1)} s`);

const out = path.resolve(opts.json ?? path.join(ROOT, "bench/results/latest.json"));
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(
  out,
  `${JSON.stringify({ date: new Date().toISOString(), quick: QUICK, machine, tree: { files: tree.files, bytes: tree.bytes, seed: SEED, version: tree.version }, iterations: N, results, targets: targets.list, notes, totalSeconds: totalS }, null, 2)}\n`,
);
console.log(`JSON: ${path.relative(process.cwd(), out)}`);
