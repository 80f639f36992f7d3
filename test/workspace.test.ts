import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { checkPathString, isInside, Workspace } from "../src/files/workspace.js";
import { ToolError } from "../src/server/errors.js";
import { decodeText, encodeText, looksBinary, matchLineEndings, usesCRLF } from "../src/files/text.js";
import { tempDir } from "./helpers.js";

describe("isInside", () => {
  test.each([
    ["/ws", "/ws", true],
    ["/ws", "/ws/a", true],
    ["/ws", "/ws/a/b/c.txt", true],
    ["/ws", "/ws/.git/config", true],
    ["/ws", "/ws/..a", true],
    ["/ws", "/ws-evil", false],
    ["/ws", "/ws-evil/a", false],
    ["/ws", "/wsx", false],
    ["/ws", "/ws.bak/a", false],
    ["/ws", "/w", false],
    ["/ws", "/", false],
    ["/ws", "/etc/passwd", false],
    ["/ws", "/other/ws", false],
    ["/ws/", "/ws/a", true],
    ["/ws/", "/ws-evil", false],
    ["/", "/anything/at/all", true],
    ["/", "/", true],
    ["/a/b", "/a", false],
    ["/a/b", "/a/bc", false],
    ["/a/b", "/a/b/c", true],
  ])("isInside(%j, %j) is %s", (root, target, expected) => {
    expect(isInside(root, target)).toBe(expected);
  });
});

describe("checkPathString", () => {
  test("accepts ordinary relative and absolute paths unchanged", () => {
    expect(checkPathString("src/index.ts")).toBe("src/index.ts");
    expect(checkPathString("/abs/path.txt")).toBe("/abs/path.txt");
    expect(checkPathString("a".repeat(255))).toBe("a".repeat(255));
  });

  test.each([[""], ["   "], ["\t\n"], [undefined], [null], [42]])("refuses empty or non-string %j", (p) => {
    expect(() => checkPathString(p)).toThrow(ToolError);
    expect(() => checkPathString(p)).toThrow(/empty/);
  });

  test("refuses a NUL byte anywhere", () => {
    for (const p of ["a\0b", "\0", "../x\0.txt", "ok.txt\0"]) expect(() => checkPathString(p)).toThrow(/NUL byte/);
  });

  test("refuses an over-long path, naming the limit", () => {
    const long = "a/".repeat(2500);
    expect(() => checkPathString(long)).toThrow(ToolError);
    expect(() => checkPathString(long)).toThrow(`The path is 5000 characters long; paths are limited to 4096.`);
    expect(checkPathString("a/".repeat(2048))).toHaveLength(4096);
  });

  test("refuses a segment over 255 bytes (counted in bytes, either slash)", () => {
    expect(() => checkPathString(`dir/${"b".repeat(256)}`)).toThrow(/segment is longer than 255 bytes/);
    expect(() => checkPathString(`dir\\${"b".repeat(256)}`)).toThrow(/segment/);
    expect(() => checkPathString("é".repeat(128))).toThrow(/segment/);
    expect(checkPathString("é".repeat(127))).toBe("é".repeat(127));
  });
});

describe("decodeText / encodeText", () => {
  const cases: [string, Buffer, { text: string; encoding: string; bom: boolean }][] = [
    ["plain UTF-8", Buffer.from("héllo\nwörld\n"), { text: "héllo\nwörld\n", encoding: "utf8", bom: false }],
    [
      "UTF-8 with BOM",
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("a\r\nb")]),
      { text: "a\r\nb", encoding: "utf8", bom: true },
    ],
    [
      "UTF-16LE with BOM",
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("x = ü\n€\n", "utf16le")]),
      { text: "x = ü\n€\n", encoding: "utf16le", bom: true },
    ],
    ["empty", Buffer.alloc(0), { text: "", encoding: "utf8", bom: false }],
    ["BOM only", Buffer.from([0xef, 0xbb, 0xbf]), { text: "", encoding: "utf8", bom: true }],
  ];
  test.each(cases)("%s decodes and round-trips byte for byte", (_, buf, expected) => {
    const file = decodeText(buf);
    expect(file).toEqual(expected);
    expect(file.text.startsWith("\uFEFF")).toBe(false);
    expect(encodeText(file).equals(buf)).toBe(true);
  });

  test("an edit of the decoded text keeps the BOM and encoding", () => {
    const buf = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("one\ntwo\n", "utf16le")]);
    const file = decodeText(buf);
    const out = encodeText({ ...file, text: file.text.replace("two", "deux") });
    expect(out.equals(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("one\ndeux\n", "utf16le")]))).toBe(true);
  });
});

describe("looksBinary", () => {
  test("NUL early means binary; UTF-16LE with BOM and plain text are not", () => {
    expect(looksBinary(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x01]))).toBe(true);
    expect(looksBinary(Buffer.from("plain text\n"))).toBe(false);
    expect(looksBinary(Buffer.alloc(0))).toBe(false);
    expect(looksBinary(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("abc", "utf16le")]))).toBe(false);
    expect(looksBinary(Buffer.concat([Buffer.from("a".repeat(9000)), Buffer.from([0])]))).toBe(false);
  });
});

describe("usesCRLF / matchLineEndings", () => {
  test.each([
    ["a\r\nb\r\n", true],
    ["a\r\nb", true],
    ["a\nb\n", false],
    ["no newline", false],
    ["", false],
    ["a\r\nb\r\nc\n", true],
    ["a\r\nb\nc\nd\n", false],
    ["a\r\nb\n", true],
    ["lone\rcr\n", false],
  ])("usesCRLF(%j) is %s", (text, expected) => {
    expect(usesCRLF(text)).toBe(expected);
  });

  test("converts LF (and keeps existing CRLF) only when the file uses CRLF", () => {
    expect(matchLineEndings("a\nb\r\nc", true)).toBe("a\r\nb\r\nc");
    expect(matchLineEndings("a\nb\n", false)).toBe("a\nb\n");
  });
});

describe("Workspace.resolve (real folders)", () => {
  let outer: string;
  let root: string;
  let ws: Workspace;
  beforeAll(async () => {
    outer = await tempDir("bdm-wsunit-");
    root = path.join(outer, "ws");
    await fs.mkdir(path.join(root, "sub"), { recursive: true });
    await fs.mkdir(path.join(outer, "ws-evil"));
    await fs.writeFile(path.join(root, "sub", "a.txt"), "a");
    await fs.symlink(path.join(outer, "ws-evil"), path.join(root, "evil-link"));
    await fs.symlink("sub", path.join(root, "sub-link"));
    ws = await Workspace.open(path.join(root, "sub", ".."));
  });
  afterAll(() => fs.rm(outer, { recursive: true, force: true }));

  test("open realpaths the root and refuses a missing folder or a file", async () => {
    expect(ws.root).toBe(root);
    await expect(Workspace.open(path.join(outer, "missing"))).rejects.toThrow(
      `Cannot use workspace ${path.join(outer, "missing")}: it does not exist`,
    );
    await expect(Workspace.open(path.join(root, "sub", "a.txt"))).rejects.toThrow(/is not a directory/);
  });

  test("relative, absolute and symlinked spellings resolve to the real path", async () => {
    const real = path.join(root, "sub", "a.txt");
    expect(await ws.resolve("sub/a.txt")).toBe(real);
    expect(await ws.resolve(real)).toBe(real);
    expect(await ws.resolve("sub-link/a.txt")).toBe(real);
    expect(await ws.resolve("./sub/../sub/a.txt")).toBe(real);
    expect(await ws.resolve("sub/new/deeper.txt", "write")).toBe(path.join(root, "sub", "new", "deeper.txt"));
    expect(ws.relative(real)).toBe("sub/a.txt");
    expect(ws.relative(root)).toBe(".");
  });

  test.each(["../ws-evil/x", "/etc/passwd", "evil-link/x", "sub/../../ws-evil", "..", "evil-link"])(
    "refuses %s",
    async (p) => {
      await expect(ws.resolve(p)).rejects.toThrow(/Access denied: .* outside the workspace/);
    },
  );

  test("refuses writes into .git but allows reading it", async () => {
    await expect(ws.resolve(".git/config", "write")).rejects.toThrow(/Writing inside \.git\/ is not allowed/);
    await expect(ws.resolve("sub/.git/hooks/pre-commit", "write")).rejects.toThrow(
      /Writing inside \.git\/ is not allowed/,
    );
    expect(await ws.resolve(".git/config")).toBe(path.join(root, ".git", "config"));
    expect(await ws.resolve(".github/x.yml", "write")).toBe(path.join(root, ".github", "x.yml"));
    expect(await ws.resolve(".gitignore", "write")).toBe(path.join(root, ".gitignore"));
  });
});
