// Benchmark: this MCP server side by side with @modelcontextprotocol/server-filesystem (and `claude mcp serve`
// when installed), raw ripgrep and plain `bash -c`. Usage: npm run bench [-- --quick] [-- --json PATH]
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { rgPath } from "@vscode/ripgrep";

const ROOT = path.resolve(import.meta.dirname, "..");
const { values: opts } = parseArgs({
  options: { quick: { type: "boolean", default: false }, json: { type: "string" } },
});
const QUICK = opts.quick;
const TREE_VERSION = 1; // bump when the generator changes
const SEED = 20240601;
const SIZE = QUICK ? { files: 500, binaries: 10, bytes: 6e6 } : { files: 5000, binaries: 50, bytes: 60e6 };
const N = QUICK
  ? { cold: 3, calls: 30, edits: 30, warm: 5, grep: 3, run: 10, drain: 200_000_000 }
  : { cold: 10, calls: 300, edits: 300, warm: 10, grep: 15, run: 30, drain: 2_000_000_000 };
const PATTERNS = { common: "handleRequest", rare: "quuxFrobnicator", regex: String.raw`fetch[A-Z]\w+\(\w+, \d{3}\)` };
const RG_BASE = ["--no-config", "--hidden", "--glob", "!.git", "--no-require-git", "--no-messages"]; // src/tools/grep.ts
const MARKERS = ['"alpha"', '"omega"'];

// ---------- deterministic tree ----------
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const WORDS =
  "user order cache request handle fetch parse build config session token item list map index query result error stream buffer node tree event queue worker client server route schema model store record batch retry limit".split(
    " ",
  );

function generator(rand) {
  const int = (n) => Math.floor(rand() * n);
  const pick = (arr) => arr[int(arr.length)];
  const cap = (w) => w[0].toUpperCase() + w.slice(1);
  const camel = () => pick(WORDS) + cap(pick(WORDS)) + (rand() < 0.3 ? cap(pick(WORDS)) : "");
  const snake = () => `${pick(WORDS)}_${pick(WORDS)}`;
  const type = () => cap(pick(WORDS)) + cap(pick(WORDS));
  const phrase = () => Array.from({ length: 3 + int(6) }, () => pick(WORDS)).join(" ");
  const longLine = () =>
    `const DATA_${int(1e6)} = [${Array.from({ length: 200 + int(600) }, () => (rand() < 0.5 ? int(1e5) : `"${camel()}"`)).join(", ")}];`;
  const lines = {
    ts: [
      () => `export async function ${camel()}(${camel()}: ${type()}, limit: number): Promise<${type()}> {`,
      () => `  const ${camel()} = await ${camel()}.${camel()}(${camel()}, ${int(1000)});`,
      () => `  if (${camel()} === undefined) throw new Error("${phrase()}");`,
      () => `  return ${camel()}.filter((x) => x.${camel()} > ${int(100)}).map((x) => x.${camel()});`,
      () => `import { ${camel()}, ${type()} } from "./${pick(WORDS)}/${pick(WORDS)}.js";`,
      () => `  // ${phrase()}`,
      () => "}",
    ],
    js: [
      () => `export function ${camel()}(${camel()}, options = {}) {`,
      () => `  const ${camel()} = ${camel()}.${camel()}(${camel()}, ${int(1000)});`,
      () => `  await ${camel()}(${camel()}, ${100 + int(900)});`,
      () => `  module.exports.${camel()} = ${camel()};`,
      () => "}",
    ],
    py: [
      () => `def ${snake()}(self, ${snake()}, ${snake()}=None):`,
      () => `    ${snake()} = self.${snake()}(${snake()}, ${int(1000)})`,
      () => `    return [x for x in ${snake()} if x.${snake()} > ${int(100)}]`,
      () => `class ${type()}(${type()}):`,
      () => `    # ${phrase()}`,
    ],
    go: [
      () => `func (s *${type()}) ${cap(camel())}(ctx context.Context, ${camel()} ${type()}) error {`,
      () => `\t${camel()}, err := s.${camel()}(ctx, ${int(1000)})`,
      () => `\tif err != nil {\n\t\treturn fmt.Errorf("${phrase()}: %w", err)\n\t}`,
      () => "}",
    ],
  };
  /** Text of about `bytes` bytes (or exactly `count` lines) in language `lang`. */
  const text = (lang, { bytes = Infinity, count = Infinity, long = true }) => {
    const out = [];
    for (let size = 0; size < bytes && out.length < count; ) {
      const line = long && rand() < 0.01 ? longLine() : pick(lines[lang])();
      out.push(line);
      size += line.length + 1;
    }
    return out;
  };
  return { rand, int, pick, text };
}

/** small.ts and big.ts, each with one BENCH_MARKER line in the middle for the Edit benchmark, into each of dirs (rewritten every run). */
function writeEditFiles(dirs) {
  const g = generator(mulberry32(SEED + 1));
  for (const [name, count] of [
    ["small.ts", 200],
    ["big.ts", 20_000],
  ]) {
    const lines = g.text("ts", { count, long: false });
    lines[count / 2] = `export const BENCH_MARKER = ${MARKERS[0]};`;
    for (const dir of dirs) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, name), `${lines.join("\n")}\n`);
    }
  }
}

function ensureTree() {
  const base = path.join(os.tmpdir(), `backend-dev-bench-${TREE_VERSION}`);
  const dir = path.join(base, `${QUICK ? "quick" : "full"}-${SEED}`);
  const stamp = `${dir}.json`;
  if (fs.existsSync(stamp)) return { dir, ...JSON.parse(fs.readFileSync(stamp, "utf8")), cached: true };
  fs.rmSync(dir, { recursive: true, force: true });
  const g = generator(mulberry32(SEED));
  const dirs = Array.from({ length: Math.ceil(SIZE.files / 20) }, (_, i) =>
    path.join("packages", `pkg${i % 25}`, ...Array.from({ length: 1 + g.int(3) }, () => g.pick(WORDS))),
  );
  const rare = new Set([7, SIZE.files / 2 + 1, SIZE.files - 30]);
  const langs = ["ts", "ts", "js", "py", "go"];
  let bytes = 0;
  for (let i = 0; i < SIZE.files; i++) {
    const lang = g.pick(langs);
    const folder = i % 20 === 0 ? path.join("build", `out${i % 7}`) : g.pick(dirs); // 5% under the ignored build/
    const lines = g.text(lang, { bytes: ((SIZE.bytes / SIZE.files) * 3 * g.rand() ** 2) | 0 });
    if (rare.has(i)) lines.splice(g.int(lines.length), 0, `const quuxFrobnicator = ${i};`);
    const body = `${lines.join("\n")}\n`;
    fs.mkdirSync(path.join(dir, folder), { recursive: true });
    fs.writeFileSync(path.join(dir, folder, `${g.pick(WORDS)}_${i}.${lang}`), body);
    bytes += body.length;
  }
  fs.mkdirSync(path.join(dir, "assets"), { recursive: true });
  for (let i = 0; i < SIZE.binaries; i++) {
    const buf = Buffer.alloc(1024 + g.int(64 * 1024), 0);
    for (let j = 0; j < buf.length; j++) if (g.rand() < 0.7) buf[j] = g.int(256);
    fs.writeFileSync(path.join(dir, "assets", `blob_${i}.bin`), buf);
    bytes += buf.length;
  }
  fs.writeFileSync(path.join(dir, ".gitignore"), "build/\n");
  const info = { files: SIZE.files + SIZE.binaries + 3, bytes };
  fs.writeFileSync(stamp, JSON.stringify(info));
  return { dir, ...info, cached: false };
}

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
  return [
    row(`Run \`true\` (--sandbox ${sandbox}${sandbox === "off" ? "" : ", sandboxed"})`, oursMs, "bash -c true", bashMs),
  ];
}

async function drain(peer) {
  const command = `head -c ${N.drain} /dev/zero | tr '\\0' y`;
  const s = await connect(peer);
  const oursMs = await time(() => s.call("Run", { command, timeout: 600_000 }, 660_000));
  const rss = peakRss(s.pid);
  await s.close();
  const rawMs = await time(() => spawnDrain("bash", ["-c", command]));
  return [
    row(`Run draining ${N.drain / 1e6} MB: wall time`, oursMs, "bash → node pipe", rawMs),
    row(`Run draining ${N.drain / 1e6} MB: server peak RSS`, rss, "", undefined, mb),
  ];
}

// ---------- main ----------
const started = performance.now();
const tree = ensureTree();
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
    }
    lines.push(row("Peak RSS after reads + edits", rwOurs.rss, p.name, rw[k].rss, mb));
    notes.push(
      `Read result size (JSON chars) vs ${p.name}: small.ts ${rwOurs["Read small.ts"].chars} vs ${rw[k]["Read small.ts"].chars ?? "–"}, big.ts ${rwOurs["Read big.ts"].chars} vs ${rw[k]["Read big.ts"].chars ?? "–"}.`,
    );
  }
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
  lines.push(row("Peak RSS after Grep + Run session", peakRss(grepSession.pid), "", undefined, mb));
  await grepSession.close();
  if (which("bwrap")) {
    const sandboxed = await connect(ours, ["--sandbox", "auto"]);
    lines.push(...(await runOverhead(sandboxed, "auto")));
    await sandboxed.close();
  } else notes.push("bwrap not on PATH: sandboxed Run skipped");
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
console.log(`\n${notes.map((n, i) => `${i + 1}. ${n}`).join("\n")}\n\nTotal ${totalS.toFixed(1)} s`);

const out = path.resolve(opts.json ?? path.join(ROOT, "bench/results/latest.json"));
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(
  out,
  `${JSON.stringify({ date: new Date().toISOString(), quick: QUICK, machine, tree: { files: tree.files, bytes: tree.bytes, seed: SEED, version: TREE_VERSION }, iterations: N, results, notes, totalSeconds: totalS }, null, 2)}\n`,
);
console.log(`JSON: ${path.relative(process.cwd(), out)}`);
