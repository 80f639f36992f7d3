import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, type Connection, fail, ok, tempDir } from "./helpers.js";

/** A real 1×1 RGBA PNG. */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  "base64",
);
const numbered = (n: number, line: string) => `${String(n).padStart(6)}\t${line}`;
const lines = (n: number, make: (i: number) => string) => Array.from({ length: n }, (_, i) => make(i + 1));

let ws: string;
let c: Connection;
const put = (rel: string, data: string | Buffer) =>
  fs.mkdir(path.dirname(path.join(ws, rel)), { recursive: true }).then(() => fs.writeFile(path.join(ws, rel), data));
const read = (file_path: string, extra: Record<string, unknown> = {}) => c.call("Read", { file_path, ...extra });

beforeAll(async () => {
  ws = await tempDir("bdm-read-");
  c = await connect(["--workspace", ws]);
});
afterAll(async () => {
  await c?.close();
  await fs.rm(ws, { recursive: true, force: true });
});

describe("Read text", () => {
  test("numbers lines like cat -n (6-wide number, tab) and drops the empty line after the final newline", async () => {
    await put("abc.txt", "alpha\n  beta\n\ngamma\n");
    expect(ok(await read("abc.txt"))).toBe(
      [numbered(1, "alpha"), numbered(2, "  beta"), numbered(3, ""), numbered(4, "gamma")].join("\n"),
    );
  });

  test("a file without a final newline shows its last line; CRLF files show no \\r", async () => {
    await put("nofinal.txt", "one\ntwo");
    expect(ok(await read("nofinal.txt"))).toBe(`${numbered(1, "one")}\n${numbered(2, "two")}`);
    await put("crlf.txt", "one\r\ntwo\r\n");
    expect(ok(await read("crlf.txt"))).toBe(`${numbered(1, "one")}\n${numbered(2, "two")}`);
  });

  test("decodes a UTF-8 BOM file without showing the BOM, and a UTF-16LE file", async () => {
    await put("bom.txt", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("héllo\n")]));
    expect(ok(await read("bom.txt"))).toBe(numbered(1, "héllo"));
    await put("u16.txt", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("größe = 1\r\n€\r\n", "utf16le")]));
    expect(ok(await read("u16.txt"))).toBe(`${numbered(1, "größe = 1")}\n${numbered(2, "€")}`);
  });

  test("accepts an absolute path inside the workspace", async () => {
    await put("dir/abs.txt", "x\n");
    expect(ok(await read(path.join(ws, "dir", "abs.txt")))).toBe(numbered(1, "x"));
  });

  test("offset (1-based) and limit select lines and say where to continue", async () => {
    await put("ten.txt", `${lines(10, (i) => `line ${i}`).join("\n")}\n`);
    expect(ok(await read("ten.txt", { offset: 3, limit: 2 }))).toBe(
      `${numbered(3, "line 3")}\n${numbered(4, "line 4")}\n\n[Showing lines 3-4 of 10 (limit 2). Continue with offset=5.]`,
    );
    expect(ok(await read("ten.txt", { offset: 9, limit: 5 }))).toBe(
      `${numbered(9, "line 9")}\n${numbered(10, "line 10")}`,
    );
    expect(ok(await read("ten.txt", { offset: 10 }))).toBe(numbered(10, "line 10"));
  });

  test("an offset past the end is refused with the line count", async () => {
    expect(fail(await read("ten.txt", { offset: 11 }))).toBe(
      "offset 11 is past the end of ten.txt, which has 10 lines. Use an offset from 1 to 10.",
    );
  });

  test("offset 0 and a non-integer limit are rejected as invalid arguments", async () => {
    expect(fail(await read("ten.txt", { offset: 0 }))).toMatch(
      /^Invalid arguments for Read:\n- "offset": .*\nFix the arguments and call Read again\.$/,
    );
    expect(fail(await read("ten.txt", { limit: 1.5 }))).toMatch(/"limit"/);
  });

  test("returns 2000 lines by default, then continues from the offset it names", async () => {
    await put("long.txt", `${lines(2500, (i) => `row ${i}`).join("\n")}\n`);
    const first = ok(await read("long.txt"));
    expect(first.split("\n").filter((l) => /^\s+\d+\t/.test(l))).toHaveLength(2000);
    expect(first).toContain(numbered(2000, "row 2000"));
    expect(first).not.toContain("row 2001");
    expect(first.endsWith("\n\n[Showing lines 1-2000 of 2500 (limit 2000). Continue with offset=2001.]")).toBe(true);
    const rest = ok(await read("long.txt", { offset: 2001 }));
    expect(rest.startsWith(numbered(2001, "row 2001"))).toBe(true);
    expect(rest.endsWith(numbered(2500, "row 2500"))).toBe(true);
    expect(rest).not.toContain("Continue with");
  });

  test("cuts lines over 2000 characters with a marker giving the real length", async () => {
    await put("wide.txt", `short\n${"x".repeat(5000)}\n${"y".repeat(2000)}\n`);
    expect(ok(await read("wide.txt"))).toBe(
      [
        numbered(1, "short"),
        numbered(2, `${"x".repeat(2000)}… [line cut: 5000 characters]`),
        numbered(3, "y".repeat(2000)),
      ].join("\n"),
    );
  });

  test("stops before 80,000 characters and says where to continue (2000 lines × 1000 chars)", async () => {
    await put("huge.txt", `${lines(2000, (i) => String(i % 10).repeat(1000)).join("\n")}\n`);
    const out = ok(await read("huge.txt"));
    expect(out.length).toBeLessThanOrEqual(80_000);
    const m =
      /\n\n\[Showing lines 1-(\d+) of 2000 to stay within the result size limit\. Continue with offset=(\d+)\.\]$/.exec(
        out,
      );
    expect(m).not.toBeNull();
    const last = Number(m![1]);
    expect(Number(m![2])).toBe(last + 1);
    expect(last).toBeGreaterThan(70);
    expect(out).toContain(numbered(last, String(last % 10).repeat(1000)));
    expect(out).not.toContain(`${String(last + 1).padStart(6)}\t`);
    const next = ok(await read("huge.txt", { offset: last + 1, limit: 3 }));
    expect(next.startsWith(numbered(last + 1, String((last + 1) % 10).repeat(1000)))).toBe(true);
    expect(next).toContain(`Continue with offset=${last + 4}.`);
  });

  test("lines cut to 2000 chars still respect the 80k cap", async () => {
    await put("wider.txt", `${lines(500, () => "z".repeat(3000)).join("\n")}\n`);
    const out = ok(await read("wider.txt"));
    expect(out.length).toBeLessThanOrEqual(80_000);
    expect(out).toContain("… [line cut: 3000 characters]");
    expect(out).toMatch(/to stay within the result size limit\. Continue with offset=\d+\.\]$/);
  });
});

describe("Read special files", () => {
  test("an empty file says it is empty", async () => {
    await put("empty.txt", "");
    expect(ok(await read("empty.txt"))).toBe("empty.txt exists but is empty (0 bytes).");
  });

  test("a PNG comes back as image content with the exact bytes", async () => {
    expect(PNG.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
    await put("img/pic.png", PNG);
    const r = await read("img/pic.png");
    expect(r.isError).toBeFalsy();
    expect(r.content).toEqual([
      { type: "text", text: `Image img/pic.png (image/png, ${PNG.length} bytes)` },
      { type: "image", data: PNG.toString("base64"), mimeType: "image/png" },
    ]);
  });

  test("images are recognised by their bytes, not their names", async () => {
    await put("img/renamed.dat", PNG);
    expect((await read("img/renamed.dat")).content[1]).toEqual({
      type: "image",
      data: PNG.toString("base64"),
      mimeType: "image/png",
    });
    await put("img/notes.png", "not really an image\n");
    expect(ok(await read("img/notes.png"))).toBe("     1\tnot really an image");
  });

  test("other binary files are refused with a clear error", async () => {
    await put("blob.bin", Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00, 0x41]));
    expect(fail(await read("blob.bin"))).toBe("blob.bin is a binary file (9 bytes) and cannot be shown as text.");
  });

  test("a directory is refused with a listing of its entries", async () => {
    await put("listing/a.txt", "a");
    await put("listing/inner/b.txt", "b");
    await put("listing/.hidden", "h");
    const msg = fail(await read("listing"));
    expect(
      msg.startsWith("listing is a directory, not a file. Read takes a file; use Glob to list files. It contains:\n"),
    ).toBe(true);
    expect(msg.split("\n").slice(1).sort()).toEqual(["  .hidden", "  a.txt", "  inner/"]);
  });

  test("a large directory listing is shortened with a count", async () => {
    await Promise.all(Array.from({ length: 25 }, (_, i) => put(`many/f${i + 1}.txt`, "")));
    const msg = fail(await read("many"));
    expect(msg.split("\n").filter((l) => /^ {2}f\d+\.txt$/.test(l))).toHaveLength(20);
    expect(msg.endsWith("\n  … and 5 more")).toBe(true);
  });

  test("the workspace root itself is a directory", async () => {
    expect(fail(await read("."))).toMatch(/^\. is a directory, not a file\./);
  });

  test("a missing file says so and suggests Glob", async () => {
    expect(fail(await read("nope/missing.txt"))).toBe(
      "File not found: nope/missing.txt. Check the path, or use Glob to find the file.",
    );
  });
});
