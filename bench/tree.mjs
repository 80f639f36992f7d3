// The bench's corpus: a deterministic tree of source files in four languages, binaries and an ignored build/ folder,
// generated once per (size, seed) into the OS temp folder, plus the two files the Read and Edit benchmarks use.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const TREE_VERSION = 1; // bump when the generator changes
export const SEED = 20240601;
export const MARKERS = ['"alpha"', '"omega"'];

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
export function writeEditFiles(dirs) {
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

/** The tree for this size (quick or full), generated when missing. */
export function ensureTree(quick) {
  const SIZE = quick ? { files: 500, binaries: 10, bytes: 6e6 } : { files: 5000, binaries: 50, bytes: 60e6 };
  const base = path.join(os.tmpdir(), `backend-dev-bench-${TREE_VERSION}`);
  const dir = path.join(base, `${quick ? "quick" : "full"}-${SEED}`);
  const stamp = `${dir}.json`;
  if (fs.existsSync(stamp))
    return { dir, ...JSON.parse(fs.readFileSync(stamp, "utf8")), cached: true, version: TREE_VERSION };
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
  return { dir, ...info, cached: false, version: TREE_VERSION };
}
