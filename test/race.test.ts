import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, expect, test } from "vitest";
import { connect, type Connection, tempDir, text, waitUntil } from "./helpers.js";

/**
 * A sandboxed command swaps the folder `d` with a link to a folder outside (renameat2 RENAME_EXCHANGE) in a tight
 * loop while the client writes and edits files under d/. Nothing outside the workspace may be created or changed.
 */
const WRITES = 10_000;
const EDITS = 400;
const PARALLEL = 16;
let outer: string;
let ws: string;
let outside: string;
let c: Connection;

const SWAP = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD, RENAME_EXCHANGE = -100, 2
os.symlink(sys.argv[1], "l")
open("swap-started", "w").close()
n = 0
while True:
    for _ in range(2000):
        libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, b"l", RENAME_EXCHANGE)
        n += 1
    if os.path.exists("stop-swap"):
        break
# leave d as the folder
if os.path.islink("d"):
    libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, b"l", RENAME_EXCHANGE)
print("swaps", n)
`;

/** Every entry under dir, links not followed: kind, size, mtime and content. */
async function snap(dir: string, out = new Map<string, string>()): Promise<Map<string, string>> {
  for (const name of (await fs.readdir(dir)).sort()) {
    const abs = path.join(dir, name);
    const st = await fs.lstat(abs);
    if (st.isDirectory()) await snap(abs, out.set(abs, "dir"));
    else
      out.set(
        abs,
        st.isSymbolicLink()
          ? `-> ${await fs.readlink(abs)}`
          : `${st.size}@${st.mtimeMs} ${(await fs.readFile(abs)).toString("base64")}`,
      );
  }
  return out;
}

/** Runs calls with at most PARALLEL in flight; counts the ones that succeeded. */
async function pool(count: number, call: (i: number) => Promise<CallToolResult>): Promise<number> {
  let next = 0;
  let succeeded = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) if (!(await call(i)).isError) succeeded++;
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return succeeded;
}

beforeAll(async () => {
  outer = await tempDir("bdm-race-");
  [ws, outside] = ["ws", "outside"].map((d) => path.join(outer, d)) as [string, string];
  await fs.mkdir(path.join(ws, "d"), { recursive: true });
  await fs.mkdir(outside);
  await fs.mkdir(path.join(outer, "home"));
  // Files outside with the names the client writes and edits: none may change.
  for (let i = 0; i < 50; i++) await fs.writeFile(path.join(outside, `f${i}.txt`), `outside ${i}\n`);
  for (let i = 0; i < EDITS; i++) {
    await fs.writeFile(path.join(ws, "d", `e${i}.txt`), `inside ${i}\n`);
    await fs.writeFile(path.join(outside, `e${i}.txt`), `inside ${i}\n`);
  }
  await fs.writeFile(path.join(ws, "swap.py"), SWAP);
  c = await connect(["--workspace", ws, "--sandbox", "os"], { env: { HOME: path.join(outer, "home") } });
});
afterAll(async () => {
  await c?.close();
  await fs.rm(outer, { recursive: true, force: true });
});

test(`${WRITES} Writes and ${EDITS} Edits under a folder swapped with a link to outside change nothing outside`, {
  timeout: 600_000,
}, async () => {
  const before = await snap(outside);
  const swapper = c.client.callTool(
    { name: "Run", arguments: { command: `python3 swap.py ${outside}`, timeout: 600_000 } },
    undefined,
    { timeout: 600_000 },
  );
  swapper.catch(() => undefined);
  expect(await waitUntil(() => existsSync(path.join(ws, "swap-started")), 30_000)).toBe(true);

  // Reads race too (they may read either side); Edits then go through the write path under the same race.
  for (let i = 0; i < EDITS; i++) await c.call("Read", { file_path: `d/e${i}.txt` });
  const written = await pool(WRITES, (i) => c.call("Write", { file_path: `d/f${i}.txt`, content: `written ${i}\n` }));
  const edited = await pool(EDITS, (i) =>
    c.call("Edit", { file_path: `d/e${i}.txt`, old_string: "inside", new_string: "edited" }),
  );

  await fs.writeFile(path.join(ws, "stop-swap"), "");
  const run = (await swapper) as CallToolResult;
  expect(text(run)).toMatch(/swaps \d+/);
  const swaps = Number(/swaps (\d+)/.exec(text(run))![1]);
  process.stderr.write(
    `race: ${swaps} swaps, ${written} of ${WRITES} writes and ${edited} of ${EDITS} edits succeeded\n`,
  );

  expect(await snap(outside)).toEqual(before);
  // The race was real: both writes that landed and writes refused happened.
  expect(written).toBeGreaterThan(0);
  expect(written).toBeLessThan(WRITES);
  const inside = (await fs.readdir(path.join(ws, "d"))).filter((f) => /^f\d+\.txt$/.test(f));
  expect(inside.length).toBe(written);
});
