import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, type Connection, fail, ok, tempDir } from "./helpers.js";

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const numbered = (n: number, line: string) => `${String(n).padStart(6)}\t${line}`;

let ws: string;
let c: Connection;
const abs = (rel: string) => path.join(ws, rel);
const put = async (rel: string, data: string | Buffer) => {
  await fs.mkdir(path.dirname(abs(rel)), { recursive: true });
  await fs.writeFile(abs(rel), data);
};
const bytes = (rel: string) => fs.readFile(abs(rel));
const content = (rel: string) => fs.readFile(abs(rel), "utf8");
const read = async (rel: string) => ok(await c.call("Read", { file_path: rel }));
const write = (file_path: string, text: string) => c.call("Write", { file_path, content: text });
const edit = (file_path: string, old_string: string, new_string: string, replace_all?: boolean) =>
  c.call("Edit", { file_path, old_string, new_string, ...(replace_all === undefined ? {} : { replace_all }) });
/** Read, then a write through fs that makes the read stale. */
const readThenChange = async (rel: string, data: string) => {
  await read(rel);
  await fs.writeFile(abs(rel), data);
};

beforeAll(async () => {
  ws = await tempDir("bdm-write-");
  c = await connect(["--workspace", ws]);
  await c.client.listTools(); // lets the client check structuredContent against each outputSchema
});
afterAll(async () => {
  await c?.close();
  await fs.rm(ws, { recursive: true, force: true });
});

describe("Write", () => {
  test("creates a new file and its missing parent folders; structured result matches the text", async () => {
    const r = await write("deep/a/b/new.txt", "hello\nworld\n");
    const message = "Created deep/a/b/new.txt (2 lines, 12 bytes).";
    expect(ok(r)).toBe(message);
    expect(r.structuredContent).toEqual({
      file_path: "deep/a/b/new.txt",
      action: "created",
      bytes: 12,
      lines: 2,
      message,
    });
    expect(await content("deep/a/b/new.txt")).toBe("hello\nworld\n");
    expect(await fs.readdir(abs("deep/a/b"))).toEqual(["new.txt"]);
  });

  test("creates an empty file", async () => {
    const r = await write("empty.txt", "");
    expect(ok(r)).toBe("Created empty.txt (0 lines, 0 bytes).");
    expect(r.structuredContent).toMatchObject({ action: "created", bytes: 0, lines: 0 });
    expect(await content("empty.txt")).toBe("");
  });

  test("overwriting an existing file without reading it first is refused and leaves it intact", async () => {
    await put("unread.txt", "original\n");
    expect(fail(await write("unread.txt", "new\n"))).toBe(
      "unread.txt has not been read in this session. Read it first, then retry.",
    );
    expect(await content("unread.txt")).toBe("original\n");
  });

  test("after a Read it overwrites; structured message equals the text", async () => {
    await put("over.txt", "v1\n");
    await read("over.txt");
    const r = await write("over.txt", "v2 line one\nv2 line two");
    expect(ok(r)).toBe("Overwrote over.txt (2 lines, 23 bytes).");
    expect(r.structuredContent).toEqual({
      file_path: "over.txt",
      action: "overwritten",
      bytes: 23,
      lines: 2,
      message: "Overwrote over.txt (2 lines, 23 bytes).",
    });
    expect(await content("over.txt")).toBe("v2 line one\nv2 line two");
  });

  test("its own earlier Write counts as a read: a second Write needs no Read", async () => {
    ok(await write("twice.txt", "1\n"));
    ok(await write("twice.txt", "2\n"));
    expect(await content("twice.txt")).toBe("2\n");
  });

  test("refuses when the file changed on disk since the Read, and works after reading again", async () => {
    await put("stale.txt", "first\n");
    await readThenChange("stale.txt", "changed by someone else\n");
    expect(fail(await write("stale.txt", "mine\n"))).toBe(
      "stale.txt changed on disk since it was last read. Read it again, then retry with the current content.",
    );
    expect(await content("stale.txt")).toBe("changed by someone else\n");
    await read("stale.txt");
    ok(await write("stale.txt", "mine\n"));
    expect(await content("stale.txt")).toBe("mine\n");
  });

  test("notices a same-size change through the modification time", async () => {
    await put("samesize.txt", "aaaa\n");
    await read("samesize.txt");
    await fs.writeFile(abs("samesize.txt"), "bbbb\n");
    const later = new Date(Date.now() + 5_000);
    await fs.utimes(abs("samesize.txt"), later, later);
    expect(fail(await write("samesize.txt", "cccc\n"))).toMatch(
      /changed on disk since it was last read\. Read it again/,
    );
    expect(await content("samesize.txt")).toBe("bbbb\n");
  });

  test("keeps CRLF line endings of an existing file when sent LF", async () => {
    await put("crlf.txt", "a\r\nb\r\n");
    await read("crlf.txt");
    ok(await write("crlf.txt", "x\ny\nz\n"));
    expect((await bytes("crlf.txt")).equals(Buffer.from("x\r\ny\r\nz\r\n"))).toBe(true);
  });

  test("keeps an LF file LF, and writes content that already has CR as given", async () => {
    await put("lf.txt", "a\nb\n");
    await read("lf.txt");
    ok(await write("lf.txt", "x\ny\n"));
    expect(await content("lf.txt")).toBe("x\ny\n");
    ok(await write("lf.txt", "p\r\nq\n"));
    expect(await content("lf.txt")).toBe("p\r\nq\n");
  });

  test("keeps a UTF-8 BOM and a UTF-16LE encoding", async () => {
    await put("bom.txt", Buffer.concat([BOM, Buffer.from("old\n")]));
    await read("bom.txt");
    ok(await write("bom.txt", "néw\n"));
    expect((await bytes("bom.txt")).equals(Buffer.concat([BOM, Buffer.from("néw\n")]))).toBe(true);

    await put("u16.txt", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("old\r\n", "utf16le")]));
    await read("u16.txt");
    ok(await write("u16.txt", "größe\n"));
    expect(
      (await bytes("u16.txt")).equals(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("größe\r\n", "utf16le")])),
    ).toBe(true);
  });

  test("keeps the file's permissions and leaves no temp file behind", async () => {
    await put("tools/run.sh", "#!/bin/sh\necho old\n");
    await fs.chmod(abs("tools/run.sh"), 0o755);
    await read("tools/run.sh");
    ok(await write("tools/run.sh", "#!/bin/sh\necho new\n"));
    expect((await fs.stat(abs("tools/run.sh"))).mode & 0o777).toBe(0o755);
    expect(await fs.readdir(abs("tools"))).toEqual(["run.sh"]);
  });

  test("refuses to write over a directory", async () => {
    await fs.mkdir(abs("adir"), { recursive: true });
    expect(fail(await write("adir", "x"))).toBe("adir is a directory; give a file path.");
  });

  test("creates 60 missing folders in one Write", async () => {
    const deep = `${Array.from({ length: 60 }, (_, i) => `l${i}`).join("/")}/leaf.txt`;
    ok(await write(deep, "deep\n"));
    expect(await content(deep)).toBe("deep\n");
  });

  test("refuses a FIFO and the workspace root, without blocking", async () => {
    execFileSync("mkfifo", [abs("pipe")]);
    expect(fail(await write("pipe", "x"))).toBe("pipe is not a regular file.");
    expect(fail(await write(".", "x"))).toMatch(/is not a file inside the workspace/);
  });

  test("a link to a folder outside in the middle of the path is refused (no realpath race window to use)", async () => {
    await fs.symlink("/tmp", abs("tmplink"));
    expect(fail(await write("tmplink/x.txt", "x"))).toMatch(/^Access denied/);
  });
});

describe("Edit", () => {
  test("needs an earlier Read", async () => {
    await put("e-unread.txt", "alpha\n");
    expect(fail(await edit("e-unread.txt", "alpha", "beta"))).toBe(
      "e-unread.txt has not been read in this session. Read it first, then retry.",
    );
    expect(await content("e-unread.txt")).toBe("alpha\n");
  });

  test("is refused when the file changed since the Read", async () => {
    await put("e-stale.txt", "alpha\n");
    await readThenChange("e-stale.txt", "alpha and more\n");
    expect(fail(await edit("e-stale.txt", "alpha", "beta"))).toBe(
      "e-stale.txt changed on disk since it was last read. Read it again, then retry with the current content.",
    );
    expect(await content("e-stale.txt")).toBe("alpha and more\n");
  });

  test("replaces a unique string; structured result has the numbered snippet and a unified diff", async () => {
    await put("e-basic.txt", `${Array.from({ length: 10 }, (_, i) => `l${i + 1}`).join("\n")}\n`);
    await read("e-basic.txt");
    const r = await edit("e-basic.txt", "l5\n", "five\nFIVE\n");
    const snippet = ["l2", "l3", "l4", "five", "FIVE", "l6", "l7", "l8"].map((l, i) => numbered(i + 2, l)).join("\n");
    expect(ok(r)).toBe(`Edited e-basic.txt: 1 replacement. The edited region:\n${snippet}`);
    const s = r.structuredContent as { file_path: string; replacements: number; snippet: string; diff: string };
    expect(s.file_path).toBe("e-basic.txt");
    expect(s.replacements).toBe(1);
    expect(s.snippet).toBe(snippet);
    expect(s.diff).toContain("--- a/e-basic.txt");
    expect(s.diff).toContain("+++ b/e-basic.txt");
    expect(s.diff).toContain("@@ -2,7 +2,8 @@\n l2\n l3\n l4\n-l5\n+five\n+FIVE\n l6\n l7\n l8\n");
    expect(await content("e-basic.txt")).toBe("l1\nl2\nl3\nl4\nfive\nFIVE\nl6\nl7\nl8\nl9\nl10\n");
  });

  test("not found: error shows the most similar lines", async () => {
    await put("e-near.js", "const a = 1;\nfunction computeTotal(items) {\n  return items.length;\n}\n");
    await read("e-near.js");
    const msg = fail(await edit("e-near.js", "function computeTotals(item) {", "function sum(items) {"));
    expect(msg).toBe(
      "old_string was not found in e-near.js. It must match the file exactly, including whitespace and indentation; Read the file again if unsure.\n" +
        `The most similar lines in the file:\n${numbered(2, "function computeTotal(items) {")}`,
    );
    expect(await content("e-near.js")).toBe(
      "const a = 1;\nfunction computeTotal(items) {\n  return items.length;\n}\n",
    );
  });

  test("found several times: error gives the count and line numbers; replace_all replaces them all", async () => {
    await put("e-multi.txt", "foo = 1\nbar\nfoo = 1\nbaz\nfoo = 1\n");
    await read("e-multi.txt");
    expect(fail(await edit("e-multi.txt", "foo = 1", "foo = 2"))).toBe(
      "old_string occurs 3 times in e-multi.txt (lines 1, 3, 5). Add surrounding lines to make it unique, or set replace_all to true.",
    );
    expect(await content("e-multi.txt")).toBe("foo = 1\nbar\nfoo = 1\nbaz\nfoo = 1\n");
    const r = await edit("e-multi.txt", "foo = 1", "foo = 2", true);
    expect(ok(r)).toMatch(/^Edited e-multi\.txt: 3 replacements\. The edited region:\n/);
    expect(r.structuredContent).toMatchObject({ replacements: 3 });
    expect(await content("e-multi.txt")).toBe("foo = 2\nbar\nfoo = 2\nbaz\nfoo = 2\n");
  });

  test("identical old and new strings, and an empty old_string, are errors", async () => {
    await put("e-same.txt", "same\n");
    await read("e-same.txt");
    expect(fail(await edit("e-same.txt", "same", "same"))).toBe(
      "old_string and new_string are identical, so there is nothing to change. Give a different new_string.",
    );
    expect(fail(await edit("e-same.txt", "", "x"))).toMatch(/^old_string is empty\./);
    expect(await content("e-same.txt")).toBe("same\n");
  });

  test("a missing file or a binary file is refused", async () => {
    expect(fail(await edit("e-missing.txt", "a", "b"))).toBe(
      "File not found: e-missing.txt. Use Write to create a new file.",
    );
    ok(await write("e-bin.dat", "a\u0000b"));
    expect(fail(await edit("e-bin.dat", "a", "b"))).toBe("e-bin.dat is a binary file; Edit works on text files.");
  });

  test("a CRLF file edited with LF strings stays CRLF and is otherwise byte-for-byte identical", async () => {
    const before = "line one\r\nline two\r\nline three\r\nline four\r\n";
    await put("e-crlf.txt", before);
    await read("e-crlf.txt");
    ok(await edit("e-crlf.txt", "line two\nline three", "line 2\nline 2.5\nline 3"));
    expect(
      (await bytes("e-crlf.txt")).equals(Buffer.from("line one\r\nline 2\r\nline 2.5\r\nline 3\r\nline four\r\n")),
    ).toBe(true);
  });

  test("a UTF-8 BOM file keeps its BOM and every other byte", async () => {
    const before = Buffer.concat([BOM, Buffer.from("x = 1\r\ny = 2\r\n")]);
    await put("e-bom.txt", before);
    await read("e-bom.txt");
    ok(await edit("e-bom.txt", "y = 2", "y = 3"));
    expect((await bytes("e-bom.txt")).equals(Buffer.concat([BOM, Buffer.from("x = 1\r\ny = 3\r\n")]))).toBe(true);
  });

  test("keeps a trailing newline, and the lack of one", async () => {
    await put("e-nl.txt", "a\nb\n");
    await put("e-nonl.txt", "a\nb");
    await read("e-nl.txt");
    await read("e-nonl.txt");
    ok(await edit("e-nl.txt", "b", "c"));
    ok(await edit("e-nonl.txt", "b", "c"));
    expect(await content("e-nl.txt")).toBe("a\nc\n");
    expect(await content("e-nonl.txt")).toBe("a\nc");
  });

  test("a file written by Write can be edited without a Read, and successive Edits need no new Read", async () => {
    ok(await write("e-chain.txt", "one\ntwo\n"));
    ok(await edit("e-chain.txt", "one", "1"));
    ok(await edit("e-chain.txt", "two", "2"));
    expect(await content("e-chain.txt")).toBe("1\n2\n");
  });

  test("20 concurrent Edits of different lines of one file are all applied", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => String(i + 1).padStart(2, "0"));
    await put("e-many.ts", ids.map((id) => `export const v${id} = 0;\n`).join(""));
    await read("e-many.ts");
    const results = await Promise.all(
      ids.map((id) => edit("e-many.ts", `const v${id} = 0;`, `const v${id} = ${Number(id)};`)),
    );
    for (const r of results) expect(ok(r)).toMatch(/^Edited e-many\.ts: 1 replacement\./);
    expect(await content("e-many.ts")).toBe(ids.map((id) => `export const v${id} = ${Number(id)};\n`).join(""));
  });
});
