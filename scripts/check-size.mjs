// Lint step: no source file over MAX_LINES lines (function length is Biome's noExcessiveLinesPerFunction).
import fs from "node:fs";
import path from "node:path";

const MAX_LINES = 300;
const walk = (dir) =>
  fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
const long = walk("src")
  .filter((f) => f.endsWith(".ts"))
  .map((f) => [f, fs.readFileSync(f, "utf8").split("\n").length - 1])
  .filter(([, n]) => n > MAX_LINES);
for (const [f, n] of long) console.error(`${f}: ${n} lines (at most ${MAX_LINES}); split it by concern`);
process.exit(long.length ? 1 : 0);
