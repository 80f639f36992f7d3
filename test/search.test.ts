import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, type Connection, fail, ok, tempDir } from "./helpers.js";

const INJECTION = "x'; touch pwned; '";
const BIG_FILES = 1200;
const BIG_LINES = 30_000;

/** Files of the git workspace, oldest first (mtimes are set in this order). */
const FILES: [string, string][] = [
  ["docs/readme.md", "Hello docs\n"],
  ["src/util.ts", "export const hello = 1;\n"],
  ["src/nested/deep.ts", "export const deep = true;\n"],
  [
    "src/app.ts",
    'import { a } from "./a";\n// TODO: first\nexport function Hello() {\n  return "hello world";\n}\n// todo: second\n',
  ],
  ["src/view.tsx", "export const View = () => null; // TODO: third\n"],
  [".hidden/conf.ts", "export const hello = 'hidden';\n"],
  ["ignored/secret.ts", "hello from an ignored folder\n"],
  ["debug.log", "hello log\n"],
  [".gitignore", "ignored/\n*.log\n"],
  ["inject.txt", `${INJECTION}\n`],
  ["dash.txt", "--version\n-foo bar\n"],
  ["ml.txt", "start\nmiddle\nend\n"],
];

let ws: string;
let plain: string;
let c: Connection;
let p: Connection;
const grep = (args: Record<string, unknown>) => c.call("Grep", args);
const glob = (args: Record<string, unknown>) => c.call("Glob", args);

async function put(root: string, rel: string, data: string) {
  await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await fs.writeFile(path.join(root, rel), data);
}

async function allNames(dir: string): Promise<string[]> {
  return (await fs.readdir(dir, { recursive: true })).map(String);
}

beforeAll(async () => {
  [ws, plain] = await Promise.all([tempDir("bdm-search-"), tempDir("bdm-plain-")]);
  execFileSync("git", ["init", "-q", ws]);
  const base = Date.now() / 1000 - 100_000;
  for (const [i, [rel, data]] of FILES.entries()) {
    await put(ws, rel, data);
    await fs.utimes(path.join(ws, rel), base + i * 100, base + i * 100);
  }

  await put(plain, ".gitignore", "build/\nsecret-*.txt\n");
  await put(plain, "build/out.txt", "token\n");
  await put(plain, "secret-1.txt", "token\n");
  await put(plain, "keep.txt", "token\n");
  await put(plain, "sub/.gitignore", "local.txt\n");
  await put(plain, "sub/local.txt", "token\n");
  await put(plain, "sub/kept.txt", "token\n");
  await fs.mkdir(path.join(plain, "big"));
  await Promise.all(
    Array.from({ length: BIG_FILES }, (_, i) =>
      fs.writeFile(
        path.join(
          plain,
          "big",
          `file-name-padded-so-that-twelve-hundred-exceed-the-budget-${String(i).padStart(5, "0")}.dat`,
        ),
        "needle\n",
      ),
    ),
  );
  await put(
    plain,
    "many/lines.md",
    Array.from({ length: BIG_LINES }, (_, i) => `haystack ${i} with some padding text to make it longer`).join("\n"),
  );

  [c, p] = await Promise.all([connect(["--workspace", ws]), connect(["--workspace", plain])]);
});
afterAll(async () => {
  await Promise.all([c?.close(), p?.close()]);
  await Promise.all([ws, plain].map((d) => d && fs.rm(d, { recursive: true, force: true })));
});

describe.concurrent("Grep output modes", () => {
  test("files_with_matches (default) lists matching files newest first, relative to the workspace", async () => {
    expect(ok(await grep({ pattern: "hello" }))).toBe("Found 3 files\n.hidden/conf.ts\nsrc/app.ts\nsrc/util.ts");
  });

  test("content shows path:line:text", async () => {
    const rows = ok(await grep({ pattern: "TODO", output_mode: "content" })).split("\n");
    expect(rows.sort()).toEqual([
      "src/app.ts:2:// TODO: first",
      "src/view.tsx:1:export const View = () => null; // TODO: third",
    ]);
  });

  test("content without line numbers when -n is false", async () => {
    expect(ok(await grep({ pattern: "TODO", output_mode: "content", "-n": false, path: "src/app.ts" }))).toBe(
      "src/app.ts:// TODO: first",
    );
  });

  test("count gives matching lines per file, sorted by path, with a total", async () => {
    expect(ok(await grep({ pattern: "o", output_mode: "count", path: "src" }))).toBe(
      "7 matching lines in 4 files\nsrc/app.ts:4\nsrc/nested/deep.ts:1\nsrc/util.ts:1\nsrc/view.tsx:1",
    );
  });

  test("count on a single file still names the file", async () => {
    expect(ok(await grep({ pattern: "o", output_mode: "count", path: "src/app.ts" }))).toBe(
      "4 matching lines in 1 file\nsrc/app.ts:4",
    );
  });

  test("no match says so", async () => {
    expect(ok(await grep({ pattern: "zzz-not-there" }))).toBe("No matches found.");
    expect(ok(await grep({ pattern: "zzz-not-there", output_mode: "content" }))).toBe("No matches found.");
    expect(ok(await grep({ pattern: "zzz-not-there", output_mode: "count" }))).toBe("No matches found.");
  });
});

describe.concurrent("Grep options", () => {
  test("-i ignores case", async () => {
    expect(ok(await grep({ pattern: "todo", "-i": true, output_mode: "content", path: "src/app.ts" }))).toBe(
      "src/app.ts:2:// TODO: first\nsrc/app.ts:6:// todo: second",
    );
    expect(ok(await grep({ pattern: "HELLO", "-i": true }))).toBe(
      "Found 4 files\n.hidden/conf.ts\nsrc/app.ts\nsrc/util.ts\ndocs/readme.md",
    );
  });

  test("-A, -B and -C add context lines, with -- between separate groups", async () => {
    expect(ok(await grep({ pattern: "TODO", output_mode: "content", path: "src/app.ts", "-A": 1 }))).toBe(
      "src/app.ts:2:// TODO: first\nsrc/app.ts-3-export function Hello() {",
    );
    expect(ok(await grep({ pattern: "TODO", output_mode: "content", path: "src/app.ts", "-B": 1 }))).toBe(
      'src/app.ts-1-import { a } from "./a";\nsrc/app.ts:2:// TODO: first',
    );
    expect(ok(await grep({ pattern: "todo", "-i": true, output_mode: "content", path: "src/app.ts", "-C": 1 }))).toBe(
      [
        'src/app.ts-1-import { a } from "./a";',
        "src/app.ts:2:// TODO: first",
        "src/app.ts-3-export function Hello() {",
        "--",
        "src/app.ts-5-}",
        "src/app.ts:6:// todo: second",
      ].join("\n"),
    );
  });

  test("glob filters file names", async () => {
    expect(ok(await grep({ pattern: "TODO", glob: "*.tsx" }))).toBe("Found 1 file\nsrc/view.tsx");
    expect(ok(await grep({ pattern: "export", glob: "src/**/*.ts" }))).toBe(
      "Found 3 files\nsrc/app.ts\nsrc/nested/deep.ts\nsrc/util.ts",
    );
  });

  test("type filters by ripgrep file type; an unknown type is a clear error", async () => {
    expect(ok(await grep({ pattern: "hello", "-i": true, type: "md" }))).toBe("Found 1 file\ndocs/readme.md");
    expect(fail(await grep({ pattern: "hello", type: "no-such-type" }))).toMatch(/^ripgrep failed: .*no-such-type/);
  });

  test("path narrows to a folder or file, given relative or absolute; results stay relative", async () => {
    expect(ok(await grep({ pattern: "export", path: "src/nested" }))).toBe("Found 1 file\nsrc/nested/deep.ts");
    expect(ok(await grep({ pattern: "export", path: path.join(ws, "src", "nested") }))).toBe(
      "Found 1 file\nsrc/nested/deep.ts",
    );
    expect(ok(await grep({ pattern: "deep", path: "src/nested/deep.ts", output_mode: "content" }))).toBe(
      "src/nested/deep.ts:1:export const deep = true;",
    );
    expect(ok(await grep({ pattern: "hello", path: "." }))).toBe(
      "Found 3 files\n.hidden/conf.ts\nsrc/app.ts\nsrc/util.ts",
    );
    expect(fail(await grep({ pattern: "x", path: "nope" }))).toBe(
      "Path not found: nope. Give an existing file or folder inside the workspace.",
    );
  });

  test("head_limit keeps the first entries and says how many were left out", async () => {
    expect(ok(await grep({ pattern: "hello", head_limit: 1 }))).toBe(
      "Found 3 files\n.hidden/conf.ts\n\n[2 more files left out (1 of 3 shown). Narrow the search with path, glob or type, or a more specific pattern.]",
    );
    expect(ok(await grep({ pattern: "o", output_mode: "content", path: "src/app.ts", head_limit: 2 }))).toBe(
      'src/app.ts:1:import { a } from "./a";\nsrc/app.ts:3:export function Hello() {\n\n[2 more matching lines left out (2 of 4 shown). Narrow the search with path, glob or type, or a more specific pattern.]',
    );
  });

  test("an invalid regex is a clear error that says how to escape the character", async () => {
    const msg = fail(await grep({ pattern: "foo(" }));
    expect(msg).toContain("regex parse error");
    expect(msg).toContain('escape a special character with a backslash to match it literally, e.g. "\\("');
    expect(ok(await grep({ pattern: "Hello\\(", output_mode: "content" }))).toContain(
      "src/app.ts:3:export function Hello() {",
    );
  });

  test("multiline lets a pattern span lines; without it a \\n pattern is a clear error", async () => {
    expect(ok(await grep({ pattern: "start\\nmiddle", multiline: true, output_mode: "content" }))).toBe(
      "ml.txt:1:start\nmiddle",
    );
    expect(ok(await grep({ pattern: "start.middle", multiline: true }))).toBe("Found 1 file\nml.txt");
    expect(fail(await grep({ pattern: "start\\nmiddle" }))).toMatch(/^ripgrep failed: .*multiline/s);
  });
});

describe.concurrent("Grep ignores, safety and size", () => {
  test(".gitignore is respected in a git repository; hidden files are searched; .git is not", async () => {
    const found = ok(await grep({ pattern: "hello", "-i": true }));
    expect(found).not.toContain("ignored/");
    expect(found).not.toContain("debug.log");
    expect(found).toContain(".hidden/conf.ts");
    expect(ok(await grep({ pattern: "repositoryformatversion" }))).toBe("No matches found.");
  });

  test("a glob does not bring back files that .gitignore skips", async () => {
    expect(ok(await grep({ pattern: "hello", glob: "*.log" }))).toBe("No matches found.");
    expect(ok(await grep({ pattern: "hello", glob: "**/*.ts", output_mode: "count" }))).toBe(
      "3 matching lines in 3 files\n.hidden/conf.ts:1\nsrc/app.ts:1\nsrc/util.ts:1",
    );
    expect(ok(await grep({ pattern: "hello", glob: "*", output_mode: "content", "-i": true, path: "." }))).not.toMatch(
      /debug\.log|ignored\//,
    );
  });

  test("a glob or type that leaves no file to search is simply no match", async () => {
    expect(ok(await grep({ pattern: "hello", glob: "*.rs" }))).toBe("No matches found.");
    expect(ok(await grep({ pattern: "hello", type: "rust", output_mode: "content" }))).toBe("No matches found.");
  });

  test(".gitignore is respected in a plain folder (no git), including nested .gitignore files", async () => {
    expect(existsSync(path.join(plain, ".git"))).toBe(false);
    expect(ok(await p.call("Grep", { pattern: "token", output_mode: "count" }))).toBe(
      "2 matching lines in 2 files\nkeep.txt:1\nsub/kept.txt:1",
    );
  });

  test("shell metacharacters in the pattern are searched literally and run nothing", async () => {
    expect(ok(await grep({ pattern: INJECTION }))).toBe("Found 1 file\ninject.txt");
    expect(ok(await grep({ pattern: INJECTION, output_mode: "content" }))).toBe(`inject.txt:1:${INJECTION}`);
    for (const pattern of ["$(touch pwned)", "`touch pwned`", "a; touch pwned", "a && touch pwned"]) {
      expect(ok(await grep({ pattern, glob: "*; touch pwned" }))).toBe("No matches found.");
    }
    for (const dir of [ws, process.cwd(), os.tmpdir(), os.homedir()])
      expect(existsSync(path.join(dir, "pwned"))).toBe(false);
    expect((await allNames(ws)).filter((n) => n.includes("pwned"))).toEqual([]);
  });

  test("a pattern beginning with - is a pattern, not an option", async () => {
    expect(ok(await grep({ pattern: "--version" }))).toBe("Found 1 file\ndash.txt");
    expect(ok(await grep({ pattern: "-foo", output_mode: "content" }))).toBe("dash.txt:2:-foo bar");
  });

  test("many matching files are capped below 80,000 characters with a left-out note", async () => {
    const out = ok(await p.call("Grep", { pattern: "needle", path: "big" }));
    expect(out.length).toBeLessThanOrEqual(80_000);
    expect(out.startsWith(`Found ${BIG_FILES} files (sorted by path: over 1000 files)\nbig/file-name-padded`)).toBe(
      true,
    );
    const m = new RegExp(
      `\\n\\n\\[(\\d+) more files left out \\((\\d+) of ${BIG_FILES} shown\\)\\. Narrow the search`,
    ).exec(out);
    expect(m).not.toBeNull();
    expect(Number(m![1]) + Number(m![2])).toBe(BIG_FILES);
    expect(out.split("\n").filter((l) => l.startsWith("big/"))).toHaveLength(Number(m![2]));
  });

  test("many matching lines are capped below 80,000 characters with a left-out note", async () => {
    const out = ok(await p.call("Grep", { pattern: "haystack", output_mode: "content" }));
    expect(out.length).toBeLessThanOrEqual(80_000);
    expect(out.startsWith("many/lines.md:1:haystack 0 with some padding")).toBe(true);
    const m = /\n\n\[(\d+) more matching lines left out \((\d+) of 30000 shown\)\. Narrow the search/.exec(out);
    expect(m).not.toBeNull();
    expect(Number(m![1]) + Number(m![2])).toBe(BIG_LINES);
    expect(out.split("\n").filter((l) => l.startsWith("many/lines.md:"))).toHaveLength(Number(m![2]));
  });
});

describe.concurrent("Grep files_with_matches order", () => {
  test("files with the same modification time are listed by path (locale order, as before)", async () => {
    const stamp = Date.now() / 1000 - 50;
    await Promise.all(["B.tie", "a.tie", "c.tie"].map((f) => put(plain, `ties/${f}`, "tie\n")));
    await Promise.all(["B.tie", "a.tie", "c.tie"].map((f) => fs.utimes(path.join(plain, "ties", f), stamp, stamp)));
    expect(ok(await p.call("Grep", { pattern: "tie", path: "ties" }))).toBe(
      "Found 3 files\nties/a.tie\nties/B.tie\nties/c.tie",
    );
    await fs.utimes(path.join(plain, "ties", "c.tie"), stamp + 1, stamp + 1);
    expect(ok(await p.call("Grep", { pattern: "tie", path: "ties", head_limit: 2 }))).toBe(
      "Found 3 files\nties/c.tie\nties/a.tie\n\n[1 more files left out (2 of 3 shown). Narrow the search with path, glob or type, or a more specific pattern.]",
    );
  });

  test("exactly 1000 matching files are still ordered newest first", async () => {
    const out = ok(await p.call("Grep", { pattern: "needle", path: "big", glob: "*0[0-9][0-9][0-9].dat" }));
    expect(out.startsWith("Found 1000 files\n")).toBe(true);
    const shown = out.split("\n").filter((l) => l.startsWith("big/"));
    const times = await Promise.all(shown.map(async (f) => (await fs.stat(path.join(plain, f))).mtimeMs));
    expect(times.every((t, i) => i === 0 || times[i - 1]! >= t)).toBe(true);
    const all = await fs.readdir(path.join(plain, "big"));
    const newest = Math.max(
      ...(await Promise.all(
        all.filter((f) => /0\d{3}\.dat$/.test(f)).map(async (f) => (await fs.stat(path.join(plain, "big", f))).mtimeMs),
      )),
    );
    expect(times[0]).toBe(newest);
  });

  test("a file name holding a newline is one result", async () => {
    await put(plain, "nl/two\nlines.nl", "newline-name\n");
    expect(ok(await p.call("Grep", { pattern: "newline-name" }))).toBe("Found 1 file\nnl/two\nlines.nl");
  });

  test("a NUL in the pattern is refused with a clear error, as before", async () => {
    expect(fail(await grep({ pattern: "a\u0000b" }))).toBe(
      'Grep failed: Arguments cannot contain null bytes ("\\0"): a\u0000b',
    );
  });
});

describe.concurrent("Glob", () => {
  test("matches at any depth, newest first, relative to the workspace", async () => {
    expect(ok(await glob({ pattern: "**/*.ts" }))).toBe(
      [".hidden/conf.ts", "src/app.ts", "src/nested/deep.ts", "src/util.ts"].join("\n"),
    );
    expect(ok(await glob({ pattern: "*.md" }))).toBe("docs/readme.md");
  });

  test("order follows modification time", async () => {
    const now = Date.now() / 1000;
    const stamp = (name: string, age: number) => fs.utimes(path.join(plain, "order", name), now - age, now - age);
    await Promise.all(["a.ord", "b.ord", "c.ord"].map((f) => put(plain, `order/${f}`, f)));
    await Promise.all([stamp("a.ord", 30), stamp("b.ord", 10), stamp("c.ord", 20)]);
    expect(ok(await p.call("Glob", { pattern: "*.ord" }))).toBe("order/b.ord\norder/c.ord\norder/a.ord");
    await stamp("a.ord", 0);
    expect(ok(await p.call("Glob", { pattern: "*.ord", path: "order" }))).toBe("order/a.ord\norder/b.ord\norder/c.ord");
    expect(ok(await p.call("Grep", { pattern: "ord", path: "order" }))).toBe(
      "Found 3 files\norder/a.ord\norder/b.ord\norder/c.ord",
    );
  });

  test(".gitignore is respected in a git repository and in a plain folder; .git is skipped", async () => {
    const all = ok(await glob({ pattern: "**/*" })).split("\n");
    expect(all.sort()).toEqual(
      FILES.map(([f]) => f)
        .filter((f) => !/^ignored\/|\.log$/.test(f))
        .sort(),
    );
    expect(ok(await glob({ pattern: "*.log" }))).toBe("No files match *.log.");
    expect(ok(await glob({ pattern: "ignored/*" }))).toBe("No files match ignored/*.");
    expect(ok(await glob({ pattern: "**/*", path: "src" }))).toBe(
      "src/view.tsx\nsrc/app.ts\nsrc/nested/deep.ts\nsrc/util.ts",
    );
    expect(ok(await glob({ pattern: "config" }))).toBe("No files match config.");
    expect(
      ok(await p.call("Glob", { pattern: "**/*.txt" }))
        .split("\n")
        .sort(),
    ).toEqual(["keep.txt", "sub/kept.txt"]);
  });

  test("path limits the search to a folder; patterns are relative to it", async () => {
    expect(ok(await glob({ pattern: "*.ts", path: "src" }))).toBe("src/app.ts\nsrc/nested/deep.ts\nsrc/util.ts");
    expect(ok(await glob({ pattern: "nested/*.ts", path: "src" }))).toBe("src/nested/deep.ts");
    expect(ok(await glob({ pattern: "/nested/**", path: "src/" }))).toBe("src/nested/deep.ts");
    expect(ok(await glob({ pattern: "!nested/**", path: "src" }))).toBe("src/view.tsx\nsrc/app.ts\nsrc/util.ts");
    expect(ok(await glob({ pattern: "*.ts", path: path.join(ws, "src", "nested") }))).toBe("src/nested/deep.ts");
    expect(ok(await glob({ pattern: "*.rs", path: "src" }))).toBe("No files match *.rs in src.");
    expect(fail(await glob({ pattern: "*", path: "nope" }))).toBe(
      "Path not found: nope. Give an existing file or folder inside the workspace.",
    );
  });

  test("returns at most 1000 paths and says how many were left out", async () => {
    const out = ok(await p.call("Glob", { pattern: "*.dat" }));
    expect(out.length).toBeLessThanOrEqual(80_000);
    const shown = out.split("\n").filter((l) => l.startsWith("big/"));
    expect(shown).toHaveLength(1000);
    expect(
      out.endsWith(
        `\n\n[${BIG_FILES - 1000} more files left out (1000 of ${BIG_FILES} shown). Use a more specific pattern or path.]`,
      ),
    ).toBe(true);
  });
});
