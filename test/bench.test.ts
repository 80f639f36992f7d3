import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { expect, test } from "vitest";
import { tempDir } from "./helpers.js";

test("npm run bench -- --quick completes and writes its figures as JSON", async () => {
  const out = path.join(await tempDir(), "bench.json");
  const r = spawnSync(
    process.execPath,
    [path.resolve(import.meta.dirname, "..", "bench", "bench.mjs"), "--quick", "--json", out],
    { encoding: "utf8", timeout: 170_000 },
  );
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
  const json = JSON.parse(await fs.readFile(out, "utf8"));
  expect(JSON.stringify(json)).toContain("server-filesystem");
  expect(r.stdout).toContain("| Measure |");
}, 180_000);
