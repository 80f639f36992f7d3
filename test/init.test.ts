// `backend-developer-mcp init`: the configuration file each host documents, in that host's shape, merged into what is
// there, and a server that really starts from it. HOME (and APPDATA, XDG_CONFIG_HOME) point at temp folders: the real
// home of the machine is never read or written.
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeEach, describe, expect, test } from "vitest";
import { CLI, tempDir } from "./helpers.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const pkg = JSON.parse(await fs.readFile(path.join(ROOT, "package.json"), "utf8")) as { name: string; version: string };
const exec = promisify(execFile);
const cleanup: string[] = [];
afterAll(() => Promise.all(cleanup.map((d) => fs.rm(d, { recursive: true, force: true }))));

let home: string;
let ws: string;
beforeEach(async () => {
  home = await tempDir("bdm-init-home-");
  ws = await tempDir("bdm-init-ws-");
  cleanup.push(home, ws);
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `init` with HOME and the other per-user folders in a temp folder. */
async function init(args: string[], cwd = ws): Promise<Result> {
  const env = {
    ...process.env,
    HOME: home,
    USERPROFILE: home,
    APPDATA: path.join(home, "AppData", "Roaming"),
    XDG_CONFIG_HOME: "",
  };
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, "init", ...args], { cwd, env, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const readJson = async (file: string) =>
  JSON.parse(await fs.readFile(file, "utf8")) as Record<string, Record<string, Record<string, unknown>>>;

/** Where each host documents its file, with HOME at the temp home. */
function desktopFile(): string {
  if (process.platform === "darwin")
    return path.join(home, "Library", "Application Support", "Claude", "claude_desktop_config.json");
  if (process.platform === "win32")
    return path.join(home, "AppData", "Roaming", "Claude", "claude_desktop_config.json");
  return path.join(home, ".config", "Claude", "claude_desktop_config.json");
}

const HOSTS = {
  "claude-code": {
    file: () => path.join(ws, ".mcp.json"),
    key: "mcpServers",
    keys: ["type", "command", "args", "env", "timeout"],
  },
  "claude-desktop": { file: desktopFile, key: "mcpServers", keys: ["command", "args", "env"] },
  vscode: {
    file: () => path.join(ws, ".vscode", "mcp.json"),
    key: "servers",
    keys: ["type", "command", "args", "env"],
  },
  cursor: { file: () => path.join(ws, ".cursor", "mcp.json"), key: "mcpServers", keys: ["command", "args", "env"] },
} as const;

/** The documented stdio entry of each host: exactly these keys, stdio type where the host has one, strings only. */
function expectHostShape(
  host: keyof typeof HOSTS,
  config: Record<string, Record<string, Record<string, unknown>>>,
  name = "backend-developer",
) {
  const { key, keys } = HOSTS[host];
  expect(Object.keys(config)).toContain(key);
  const entry = config[key]![name]!;
  expect(Object.keys(entry).sort()).toEqual([...keys].sort());
  if (keys.includes("type" as never)) expect(entry.type).toBe("stdio");
  expect(typeof entry.command).toBe("string");
  expect(Array.isArray(entry.args) && (entry.args as unknown[]).every((a) => typeof a === "string")).toBe(true);
  expect(Object.values(entry.env as object).every((v) => typeof v === "string")).toBe(true);
  return entry as { command: string; args: string[]; env: Record<string, string> };
}

/** Starts the server the way the host would (VS Code fills in ${workspaceFolder}; the others start it in the project) and lists its tools. */
async function startFrom(entry: { command: string; args: string[]; env: Record<string, string> }): Promise<string[]> {
  const args = entry.args.map((a) => a.replaceAll("${workspaceFolder}", ws));
  const client = new Client({ name: "init-test", version: "1" });
  await client.connect(
    new StdioClientTransport({
      command: entry.command,
      args: [...args, "--sandbox", "off"],
      env: { ...(process.env as Record<string, string>), ...entry.env },
      cwd: ws,
      stderr: "ignore",
    }),
  );
  try {
    await fs.writeFile(path.join(ws, "probe.txt"), "probe\n");
    const read = (await client.callTool({ name: "Read", arguments: { file_path: "probe.txt" } })) as {
      isError?: boolean;
      content: { text: string }[];
    };
    expect(read.isError).toBeFalsy();
    expect(read.content[0]!.text).toContain("probe");
    return (await client.listTools()).tools.map((t) => t.name);
  } finally {
    await client.close();
  }
}

describe.each(Object.keys(HOSTS) as (keyof typeof HOSTS)[])("%s", (host) => {
  test("writes the host's documented file and shape, and the server starts from it", async () => {
    const r = await init(["--client", host, "--workspace", ws]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const file = HOSTS[host].file();
    expect(r.stdout).toContain(file);
    const entry = expectHostShape(host, await readJson(file));
    expect(entry.args).toContain(path.join(ROOT, "dist", "cli.js"));
    if (host === "claude-desktop") {
      expect(path.isAbsolute(entry.command)).toBe(true);
      expect(entry.args.slice(-2)).toEqual(["--workspace", ws]);
    }
    if (host === "vscode") expect(entry.args.slice(-2)).toEqual(["--workspace", "${workspaceFolder}"]);
    // Claude Code's per-server tool-call limit covers a whole Task (default --task-timeout 1800 s) plus a minute.
    if (host === "claude-code") expect((entry as { timeout?: number }).timeout).toBe(1_860_000);
    expect(await startFrom(entry)).toEqual(
      expect.arrayContaining(["Read", "Write", "Edit", "Grep", "Glob", "Run", "Task"]),
    );
  });

  test("merges into an existing file, keeping everything in it, after a backup", async () => {
    const file = HOSTS[host].file();
    const key = HOSTS[host].key;
    const other = { command: "other-server", args: ["--x"], env: { A: "1" } };
    const before = { theme: "dark", [key]: { other }, nested: { list: [1, 2, 3] } };
    await fs.mkdir(path.dirname(file), { recursive: true });
    const original = `${JSON.stringify(before, null, 4)}\n`;
    await fs.writeFile(file, original);

    const r = await init(["--client", host, "--workspace", ws]);
    expect(r.code).toBe(0);
    const after = await readJson(file);
    expectHostShape(host, after);
    expect(after.theme).toBe("dark");
    expect(after.nested).toEqual(before.nested);
    expect(after[key]!.other).toEqual(other);
    expect(await fs.readFile(`${file}.bak`, "utf8")).toBe(original);
    // The entry was inserted into the text: taking the inserted run out gives back the original byte for byte.
    const text = await fs.readFile(file, "utf8");
    let i = 0;
    while (text[i] === original[i]) i++;
    expect(text.slice(0, i) + text.slice(i + text.length - original.length)).toBe(original);

    // Again: nothing to do, no second backup.
    const again = await init(["--client", host, "--workspace", ws]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("already has");
    await expect(fs.access(`${file}.bak.1`)).rejects.toThrow();
  });

  test("invalid JSON in the existing file: a clear error, the file untouched, no backup", async () => {
    const file = HOSTS[host].file();
    await fs.mkdir(path.dirname(file), { recursive: true });
    const broken = `{\n  "${HOSTS[host].key}": {\n    "x": { "command": "y" }\n  \n`;
    await fs.writeFile(file, broken);
    const stat = await fs.stat(file);
    const r = await init(["--client", host, "--workspace", ws]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/is not valid JSON.*line \d+, column \d+.*not changed/s);
    expect(r.stderr).toContain(file);
    expect(await fs.readFile(file, "utf8")).toBe(broken);
    expect((await fs.stat(file)).mtimeMs).toBe(stat.mtimeMs);
    expect((await fs.readdir(path.dirname(file))).filter((f) => f.includes(".bak"))).toEqual([]);
  });
});

describe("options", () => {
  test("--print prints the configuration and writes nothing", async () => {
    const r = await init(["--client", "vscode", "--print"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(path.join(ws, ".vscode", "mcp.json"));
    expectHostShape("vscode", JSON.parse(r.stdout));
    expect(await fs.readdir(ws)).toEqual([]);
    expect(await fs.readdir(home)).toEqual([]);
  });

  test("the current folder is the default workspace; --config, --name, --env, --launcher npx and server options after --", async () => {
    const target = path.join(ws, "sub", "custom.json");
    const r = await init([
      "--client",
      "claude-desktop",
      "--config",
      target,
      "--name",
      "be",
      "--env",
      "ANTHROPIC_API_KEY=sk-test",
      "--launcher",
      "npx",
      "--",
      "--sandbox",
      "os",
      "--allow-domain",
      "registry.npmjs.org",
    ]);
    expect(r.stderr).toBe("");
    const entry = expectHostShape("claude-desktop", await readJson(target), "be");
    expect(entry).toEqual({
      command: "npx",
      args: [
        "-y",
        `${pkg.name}@${pkg.version}`,
        "--workspace",
        ws,
        "--sandbox",
        "os",
        "--allow-domain",
        "registry.npmjs.org",
      ],
      env: { ANTHROPIC_API_KEY: "sk-test" },
    });
    await expect(fs.access(desktopFile())).rejects.toThrow();
  });

  test("Claude Code's timeout follows --task-timeout given to the server", async () => {
    expect((await init(["--", "--task-timeout", "600"])).code).toBe(0);
    expect((await readJson(path.join(ws, ".mcp.json"))).mcpServers!["backend-developer"]).toMatchObject({
      args: [path.join(ROOT, "dist", "cli.js"), "--task-timeout", "600"],
      timeout: 660_000,
    });
  });

  test("a differing entry of the same name is replaced, after a backup; other servers stay", async () => {
    const file = path.join(ws, ".mcp.json");
    await fs.writeFile(
      file,
      JSON.stringify({ mcpServers: { "backend-developer": { command: "old" }, keep: { command: "k" } } }),
    );
    await fs.writeFile(`${file}.bak`, "an older backup");
    const r = await init([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("replaced");
    const after = await readJson(file);
    expect(after.mcpServers!.keep).toEqual({ command: "k" });
    expect(after.mcpServers!["backend-developer"]!.command).toBe("node");
    expect(await fs.readFile(`${file}.bak`, "utf8")).toBe("an older backup");
    expect(JSON.parse(await fs.readFile(`${file}.bak.1`, "utf8")).mcpServers["backend-developer"]).toEqual({
      command: "old",
    });
  });

  test("VS Code's mcp.json may have comments and trailing commas; they stay", async () => {
    const file = path.join(ws, ".vscode", "mcp.json");
    await fs.mkdir(path.dirname(file));
    const jsonc = `{\n  // my servers\n  "servers": {\n    "other": { "type": "stdio", "command": "x" }, // inline\n  },\n  "inputs": [],\n}\n`;
    await fs.writeFile(file, jsonc);
    const r = await init(["--client", "vscode"]);
    expect(r.code).toBe(0);
    const text = await fs.readFile(file, "utf8");
    for (const kept of [
      "  // my servers",
      `    "other": { "type": "stdio", "command": "x" }, // inline`,
      `  "inputs": [],`,
    ])
      expect(text).toContain(kept);
    expect(text.indexOf('"backend-developer"')).toBeGreaterThan(text.indexOf('"other"'));

    // Without a trailing comma: the comma goes after the value, the comment stays on its line.
    await fs.writeFile(file, `{\r\n\t"servers": {\r\n\t\t"other": { "command": "x" } // inline\r\n\t}\r\n}\r\n`);
    expect((await init(["--client", "vscode"])).code).toBe(0);
    const crlf = await fs.readFile(file, "utf8");
    expect(crlf).toContain(
      `\t\t"other": { "command": "x" }, // inline\r\n\t\t"backend-developer": {\r\n\t\t\t"type": "stdio",`,
    );
    expect(crlf.replace(/\r\n/g, "")).not.toContain("\n");
  });

  test("comments are not JSON for the other hosts: refused, file untouched", async () => {
    const file = path.join(ws, ".cursor", "mcp.json");
    await fs.mkdir(path.dirname(file));
    await fs.writeFile(file, `{ // no\n "mcpServers": {} }`);
    const r = await init(["--client", "cursor"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("InvalidCommentToken");
    expect(await fs.readFile(file, "utf8")).toBe(`{ // no\n "mcpServers": {} }`);
  });

  test("wrong shapes and bad options are refused with a reason", async () => {
    await fs.writeFile(path.join(ws, ".mcp.json"), `{"mcpServers": []}`);
    expect((await init([])).stderr).toContain(`"mcpServers" in ${path.join(ws, ".mcp.json")} is not an object`);
    await fs.writeFile(path.join(ws, ".mcp.json"), `[1]`);
    expect((await init([])).stderr).toContain("does not hold a JSON object");
    const bad = await init(["--client", "emacs"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--client must be one of claude-code, claude-desktop, vscode, cursor");
    expect((await init(["--workspace", path.join(ws, "nope")])).stderr).toContain("is not an existing folder");
    expect((await init(["--env", "NOVALUE"])).stderr).toContain("--env takes NAME=VALUE");
    const help = await init(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--client HOST");
  });
});
