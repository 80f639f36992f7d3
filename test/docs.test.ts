import { spawnSync } from "node:child_process";
import path from "node:path";
import { expect, test } from "vitest";

test("the README's tool and prompt reference matches the server's schemas", () => {
  const r = spawnSync(process.execPath, [path.resolve(import.meta.dirname, "..", "scripts", "docs.mjs"), "--check"], {
    encoding: "utf8",
  });
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
});
