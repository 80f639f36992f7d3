import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { connect, type Connection, fail, ok, tempDir, text } from "./helpers.js";

/**
 * Layout (all real):
 *   <outer>/ws          the workspace (a git repo), full of links that point out
 *   <outer>/ws-evil     a sibling whose name has the workspace path as a string prefix
 *   <outer>/outside     holds canary.txt, which must never change
 *   <outer>/home        HOME of the server
 *   <outer>/wslink      -> ws, a symlinked spelling of the workspace
 */
const SECRET = "CANARY-SECRET-7f3a";
let outer: string;
let ws: string;
let outside: string;
let evil: string;
let home: string;
let c: Connection;
let snapshot: Map<string, string>;

type Tool = "Read" | "Write" | "Edit" | "Grep" | "Glob";
const ALL: Tool[] = ["Read", "Write", "Edit", "Grep", "Glob"];
const argsFor = (tool: Tool, p: string): Record<string, unknown> =>
  ({
    Read: { file_path: p },
    Write: { file_path: p, content: `pwned ${p}` },
    Edit: { file_path: p, old_string: SECRET, new_string: "pwned" },
    Grep: { pattern: SECRET, path: p, output_mode: "content" },
    Glob: { pattern: "**/*", path: p },
  })[tool];

/** Every entry under <outer> except the workspace, links not followed: size, mtime and content (or link target). */
async function snap(dir = outer, out = new Map<string, string>()): Promise<Map<string, string>> {
  for (const name of (await fs.readdir(dir)).sort()) {
    const abs = path.join(dir, name);
    if (abs === ws) continue;
    const st = await fs.lstat(abs);
    if (st.isDirectory()) await snap(abs, out.set(path.relative(outer, abs), "dir"));
    else
      out.set(
        path.relative(outer, abs),
        st.isSymbolicLink()
          ? `-> ${await fs.readlink(abs)}`
          : `${st.size}@${st.mtimeMs} ${(await fs.readFile(abs)).toString("base64")}`,
      );
  }
  return out;
}

const ACCESS_DENIED =
  /^Access denied: .+ resolves to .+, which is outside the workspace .+\. Use a path inside the workspace\.$/s;

beforeAll(async () => {
  outer = await tempDir("bdm-escape-");
  [ws, outside, evil, home] = ["ws", "outside", "ws-evil", "home"].map((d) => path.join(outer, d)) as [
    string,
    string,
    string,
    string,
  ];
  await Promise.all([ws, outside, evil, home].map((d) => fs.mkdir(d)));
  execFileSync("git", ["init", "-q", ws]);
  await fs.writeFile(path.join(outside, "canary.txt"), `${SECRET}\n`);
  await fs.writeFile(path.join(evil, "evil.txt"), `${SECRET} in the sibling\n`);
  await fs.mkdir(path.join(ws, "sub"));
  await fs.writeFile(path.join(ws, "inside.txt"), "inside\n");
  await fs.writeFile(path.join(ws, "sub", "file.txt"), "sub file\n");
  const links: [string, string][] = [
    ["link-file-out", path.join(outside, "canary.txt")],
    ["link-dir-out", outside],
    ["rel-link-out", "../outside/canary.txt"],
    ["dangling-out", path.join(outside, "dangling-target.txt")],
    ["dangling-dir-out", path.join(outside, "no-such-dir")],
    ["chain1", "chain2"],
    ["chain2", "sub/chain3"],
    ["sub/chain3", "../../outside/canary.txt"],
    ["dchain1", "dchain2"],
    ["dchain2", path.join(outside, "dchain-target.txt")],
    ["link-evil", "../ws-evil"],
    ["loop1", "loop2"],
    ["loop2", "loop1"],
    ["gitlink", ".git"],
    ["inner-link", "sub/file.txt"],
  ];
  for (const [name, target] of links) await fs.symlink(target, path.join(ws, name));
  await fs.symlink(ws, path.join(outer, "wslink"));
  c = await connect(["--workspace", ws], { env: { HOME: home } });
  snapshot = await snap();
});

afterEach(async () => {
  expect(await snap()).toEqual(snapshot);
});

afterAll(async () => {
  await c?.close();
  if (outer) await fs.rm(outer, { recursive: true, force: true });
});

async function expectRefusedEverywhere(p: string, tools: Tool[], pattern: RegExp) {
  const results = await Promise.all(tools.map((tool) => c.call(tool, argsFor(tool, p))));
  for (const [i, r] of results.entries()) {
    const what = `${tools[i]} ${JSON.stringify(p)}`;
    expect(r.isError, `${what} should be refused, got: ${text(r)}`).toBe(true);
    expect(text(r), what).toMatch(pattern);
    expect(text(r), `${what} leaked the canary`).not.toContain(SECRET);
  }
}

describe("paths that leave the workspace are refused by every tool", () => {
  const cases: [string, () => string][] = [
    ["parent-relative file", () => "../outside/canary.txt"],
    ["parent folder", () => ".."],
    ["parent folder, trailing slash", () => "../"],
    ["parent of a subfolder", () => "sub/../../outside/canary.txt"],
    ["dot-prefixed parent of a subfolder", () => "./sub/../../outside/canary.txt"],
    ["deep parent chain", () => `${"../".repeat(30)}etc/passwd`],
    ["absolute file outside", () => path.join(outside, "canary.txt")],
    ["absolute folder outside, trailing slash", () => `${outside}/`],
    ["absolute path through the workspace and back out", () => `${ws}/../outside/canary.txt`],
    ["/etc/passwd", () => "/etc/passwd"],
    ["/etc/ with trailing slash", () => "/etc/"],
    ["doubled leading slash", () => "//etc//passwd"],
    ["filesystem root", () => "/"],
    ["sibling <ws>-evil (string prefix of the root)", () => path.join(evil, "evil.txt")],
    ["sibling <ws>-evil folder", () => evil],
    ["sibling <ws>-evil, relative", () => "../ws-evil/evil.txt"],
    ["sibling via the symlinked workspace spelling", () => path.join(outer, "wslink", "..", "ws-evil", "evil.txt")],
    ["symlinked file pointing out", () => "link-file-out"],
    ["relative symlink pointing out", () => "rel-link-out"],
    ["file under a symlinked folder pointing out", () => "link-dir-out/canary.txt"],
    ["symlinked folder pointing out, trailing slash", () => "link-dir-out/"],
    ["new file under a symlinked folder pointing out", () => "link-dir-out/new.txt"],
    ["symlink chain pointing out", () => "chain1"],
    ["symlink to the evil sibling", () => "link-evil/evil.txt"],
    ["symlinked folder reached through a subfolder", () => "sub/../link-dir-out/canary.txt"],
  ];
  test.each(cases)("%s", async (_, p) => {
    await expectRefusedEverywhere(p(), ALL, ACCESS_DENIED);
  });

  test("dangling symlinks pointing out: refused, and Write does not create their targets", async () => {
    for (const p of ["dangling-out", "dchain1", "dangling-dir-out/x.txt"])
      await expectRefusedEverywhere(p, ALL, ACCESS_DENIED);
    await expect(fs.lstat(path.join(outside, "dangling-target.txt"))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(path.join(outside, "dchain-target.txt"))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(path.join(outside, "no-such-dir"))).rejects.toThrow(/ENOENT/);
  });

  test("a symlink loop is an error, not a hang", async () => {
    await expectRefusedEverywhere("loop1", ALL, /ELOOP|symbolic links/);
  });

  test("a NUL byte is refused before touching the disk", async () => {
    await expectRefusedEverywhere(
      "inside.txt\0../../outside/canary.txt",
      ALL,
      /^The path contains a NUL byte; remove it\.$/,
    );
  });

  test("an over-long path (5000 chars) and an over-long segment are refused", async () => {
    await expectRefusedEverywhere(
      "a/".repeat(2500),
      ALL,
      /^The path is 5000 characters long; paths are limited to 4096\.$/,
    );
    await expectRefusedEverywhere("../".repeat(1700), ALL, /^The path is 5100 characters long/);
    await expectRefusedEverywhere("x".repeat(300), ALL, /segment is longer than 255 bytes/);
  });

  test("an empty file path is refused", async () => {
    await expectRefusedEverywhere("", ["Read", "Write", "Edit"], /^file_path is empty/);
    await expectRefusedEverywhere("   ", ["Read", "Write", "Edit"], /^file_path is empty/);
  });
});

describe(".git is read-only", () => {
  test.each([
    ".git/config",
    ".git/hooks/pre-commit",
    "./.git/HEAD",
    "sub/../.git/config",
    ".git/",
    "gitlink/config",
    "sub/.git/hooks/post-checkout",
  ])("Write and Edit refuse %s", async (p) => {
    await expectRefusedEverywhere(p, ["Write", "Edit"], /^Writing inside \.git\/ is not allowed/);
  });

  test("the refused writes left .git untouched, and it can still be read", async () => {
    await expect(fs.lstat(path.join(ws, ".git", "hooks", "pre-commit"))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(path.join(ws, "sub", ".git"))).rejects.toThrow(/ENOENT/);
    expect(await fs.readFile(path.join(ws, ".git", "config"), "utf8")).not.toContain("pwned");
    expect(ok(await c.call("Read", { file_path: ".git/HEAD" }))).toMatch(/^ {5}1\tref: refs\/heads\//);
  });
});

describe("tricky names that stay inside are harmless literals", () => {
  test.each([
    ["%2e%2e/x.txt", "%2e%2e/x.txt"],
    ["%2e%2e%2fx.txt", "%2e%2e%2fx.txt"],
    ["..%2f..%2fx.txt", "..%2f..%2fx.txt"],
    ["~/x.txt", "~/x.txt"],
    ["$HOME/x.txt", "$HOME/x.txt"],
    ["..\\..\\x.txt", "..\\..\\x.txt"],
    [".../x.txt", ".../x.txt"],
    [" ../x.txt", " ../x.txt"],
    ["file:///etc/x.txt", "file:/etc/x.txt"],
    ["link-dir-out/../outside/x.txt", "outside/x.txt"],
    ["sub/./../sub//new.txt", "sub/new.txt"],
  ])("%s is written inside the workspace as %s", async (given, rel) => {
    const r = await c.call("Write", { file_path: given, content: "literal\n" });
    expect(ok(r)).toBe(`Created ${rel} (1 lines, 8 bytes).`);
    expect(await fs.readFile(path.join(ws, rel), "utf8")).toBe("literal\n");
    expect(ok(await c.call("Read", { file_path: given }))).toBe("     1\tliteral");
    expect(ok(await c.call("Glob", { pattern: "**/*.txt" })).split("\n")).toContain(rel);
  });

  test("~ is not expanded: the server's HOME stays empty", async () => {
    expect(await fs.readdir(home)).toEqual([]);
  });

  test("a symlink inside pointing inside works and reports the real path", async () => {
    expect(ok(await c.call("Read", { file_path: "inner-link" }))).toBe("     1\tsub file");
    expect(ok(await c.call("Grep", { pattern: "sub file", path: "inner-link" }))).toBe("Found 1 file\nsub/file.txt");
  });
});

describe("searches do not follow links out", () => {
  test("Grep over the whole workspace does not find the canary behind symlinks", async () => {
    expect(ok(await c.call("Grep", { pattern: SECRET }))).toBe("No matches found.");
    expect(ok(await c.call("Grep", { pattern: SECRET, output_mode: "content", path: "." }))).toBe("No matches found.");
    expect(ok(await c.call("Grep", { pattern: SECRET, glob: "../outside/*" }))).toBe("No matches found.");
  });

  test("Glob never lists anything outside", async () => {
    for (const pattern of [
      "**/*",
      "**/canary.txt",
      "../**",
      "../outside/*",
      `${outside}/*`,
      "/etc/passwd",
      "link-dir-out/**",
    ]) {
      const out = ok(await c.call("Glob", { pattern }));
      if (out === `No files match ${pattern}.`) continue;
      for (const rel of out.split("\n")) {
        expect(rel, pattern).not.toMatch(/^\.\.\/|^\/|canary|passwd|evil\.txt|^link-/);
        expect((await fs.lstat(path.join(ws, rel))).isFile(), rel).toBe(true);
        expect((await fs.realpath(path.join(ws, rel))).startsWith(`${ws}/`), rel).toBe(true);
      }
    }
  });
});

describe("hard link to an outside file", () => {
  test("Write and Edit replace the link inside and never modify the outside inode", async () => {
    const link = path.join(ws, "hard.txt");
    await fs.link(path.join(outside, "canary.txt"), link);
    try {
      expect(ok(await c.call("Read", { file_path: "hard.txt" }))).toBe(`     1\t${SECRET}`);
      ok(await c.call("Edit", { file_path: "hard.txt", old_string: SECRET, new_string: "edited" }));
      expect(await fs.readFile(link, "utf8")).toBe("edited\n");
      expect((await fs.stat(link)).nlink).toBe(1);
      expect(await fs.readFile(path.join(outside, "canary.txt"), "utf8")).toBe(`${SECRET}\n`);
    } finally {
      await fs.rm(link, { force: true });
    }
  });
});

describe("workspace given through a symlinked spelling", () => {
  let l: Connection;
  beforeAll(async () => {
    l = await connect(["--workspace", path.join(outer, "wslink")], { env: { HOME: home } });
  });
  afterAll(() => l?.close());

  test("the real root is used; relative, real-absolute and link-absolute paths all work", async () => {
    await vi.waitFor(() => expect(l.stderr()).toContain(`workspace ${ws} `));
    expect(ok(await l.call("Read", { file_path: "inside.txt" }))).toBe("     1\tinside");
    expect(ok(await l.call("Read", { file_path: path.join(ws, "inside.txt") }))).toBe("     1\tinside");
    expect(ok(await l.call("Read", { file_path: path.join(outer, "wslink", "inside.txt") }))).toBe("     1\tinside");
    const r = await l.call("Write", { file_path: path.join(outer, "wslink", "sub", "via-link.txt"), content: "x\n" });
    expect(ok(r)).toBe("Created sub/via-link.txt (1 lines, 2 bytes).");
    expect(await fs.readFile(path.join(ws, "sub", "via-link.txt"), "utf8")).toBe("x\n");
    expect(ok(await l.call("Grep", { pattern: "inside", path: path.join(outer, "wslink") }))).toBe(
      "Found 1 file\ninside.txt",
    );
    expect(ok(await l.call("Glob", { pattern: "*.txt", path: "sub" })).split("\n")).toEqual(
      expect.arrayContaining(["sub/file.txt", "sub/via-link.txt"]),
    );
  });

  test("escapes are still refused", async () => {
    for (const p of [
      "../outside/canary.txt",
      path.join(outer, "wslink", "..", "outside", "canary.txt"),
      path.join(evil, "evil.txt"),
      "link-file-out",
    ]) {
      expect(fail(await l.call("Read", { file_path: p })), p).toMatch(ACCESS_DENIED);
      expect(fail(await l.call("Write", { file_path: p, content: "pwned" })), p).toMatch(ACCESS_DENIED);
    }
  });
});
