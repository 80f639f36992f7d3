// The artifacts: the npm package (one `npm pack`, reused) installed into a temp folder, run through npx the way the
// Claude Code plugin runs it, and the Claude Desktop bundle (.mcpb) built from the same tarball, validated, packed,
// unpacked and started. Each server is driven through a real MCP client.
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { tempDir } from "./helpers.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const pkg = JSON.parse(await fs.readFile(path.join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  bin: Record<string, string>;
  files: string[];
  exports: unknown;
};
const exec = promisify(execFile);
const MCPB = path.join(ROOT, "node_modules", "@anthropic-ai", "mcpb", "dist", "cli", "cli.js");
const win = process.platform === "win32";

/** npm itself: the npm running this test (npm test), else the one on PATH. */
function npm(args: string[], cwd: string, timeout = 180_000) {
  const cli = process.env.npm_execpath;
  if (cli?.endsWith(".js")) return exec(process.execPath, [cli, ...args], { cwd, timeout, maxBuffer: 64 << 20 });
  return exec(win ? "npm.cmd" : "npm", args, { cwd, timeout, maxBuffer: 64 << 20, shell: win });
}

let tmp: string;
let tgz: string;
let packed: string[];
let ws: string;

beforeAll(async () => {
  tmp = await tempDir("bdm-pkg-");
  ws = await tempDir("bdm-pkg-ws-");
  await fs.writeFile(path.join(ws, "notes.txt"), "the needle is here\n");
  // dist/ is built by `npm test`; --ignore-scripts skips prepack's rebuild, which would pull dist/ from under the other tests.
  const { stdout } = await npm(["pack", "--json", "--ignore-scripts", "--pack-destination", tmp], ROOT);
  const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  tgz = path.join(tmp, info!.filename);
  packed = info!.files.map((f) => f.path.replaceAll("\\", "/"));
}, 120_000);

afterAll(async () => {
  // npx installs a tarball spec into the npm cache's _npx folder; remove the ones made for this tarball.
  const cache =
    process.env.npm_config_cache ||
    (win ? path.join(process.env.LOCALAPPDATA ?? os.homedir(), "npm-cache") : path.join(os.homedir(), ".npm"));
  for (const dir of await fs.readdir(path.join(cache, "_npx")).catch(() => [] as string[])) {
    const manifest = await fs.readFile(path.join(cache, "_npx", dir, "package.json"), "utf8").catch(() => "");
    if (tgz && manifest.includes(path.basename(tmp)))
      await fs.rm(path.join(cache, "_npx", dir), { recursive: true, force: true });
  }
  await Promise.all([tmp, ws].map((d) => d && fs.rm(d, { recursive: true, force: true })));
});

/** Starts a server over stdio with a real MCP client and checks the tools work: Read, Grep (ripgrep from the install) and the prompts. */
async function exercise(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<void> {
  const client = new Client({ name: "package-test", version: "1" });
  let stderr = "";
  const transport = new StdioClientTransport({
    command,
    args,
    cwd,
    env: { ...(process.env as Record<string, string>), ...env },
    stderr: "pipe",
  });
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  await client.connect(transport);
  try {
    expect(client.getServerVersion()).toMatchObject({ name: pkg.name, version: pkg.version });
    const tools = (await client.listTools()).tools.map((t) => t.name);
    expect(tools).toEqual(expect.arrayContaining(["Read", "Write", "Edit", "Grep", "Glob", "Run", "Task"]));
    const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
    expect(prompts).toEqual(expect.arrayContaining(["backend-developer", "be-api", "be-model", "be-validate"]));
    const read = (await client.callTool({ name: "Read", arguments: { file_path: "notes.txt" } })) as {
      isError?: boolean;
      content: { text: string }[];
    };
    expect(read.isError, read.content[0]?.text).toBeFalsy();
    expect(read.content[0]!.text).toContain("the needle is here");
    const grep = (await client.callTool({
      name: "Grep",
      arguments: { pattern: "needle", output_mode: "content" },
    })) as { isError?: boolean; content: { text: string }[] };
    expect(grep.isError, grep.content[0]?.text).toBeFalsy();
    expect(grep.content[0]!.text).toContain("notes.txt");
    expect(stderr).toContain(`v${pkg.version}`);
  } finally {
    await client.close();
  }
}

describe("npm package", () => {
  test("package.json says exactly what ships: the built JS, prompts/, tools/, README; no sources, tests, maps or demo", () => {
    expect(pkg.bin).toEqual({ [pkg.name]: "dist/cli.js" });
    expect(pkg.exports).toEqual({ "./package.json": "./package.json" });
    expect(packed).toEqual(
      expect.arrayContaining([
        "package.json",
        "README.md",
        "dist/cli.js",
        "prompts/instructions.md",
        "prompts/agents/backend-developer.md",
        "prompts/commands/api.md",
        "tools/Read.md",
        "tools/Task.md",
      ]),
    );
    for (const f of packed)
      expect(f, f).toMatch(/^(package\.json|README\.md|LICENSE|dist\/[^/]+\.js|prompts\/.+\.md|tools\/[^/]+\.md)$/);
    expect(packed).not.toContain("dist/demo.js");
  });

  test("installed from the tarball into a temp folder, the server starts from the packed files", async () => {
    const app = path.join(tmp, "app");
    await fs.mkdir(app);
    await fs.writeFile(path.join(app, "package.json"), "{}");
    await npm(["install", "--no-audit", "--no-fund", "--prefer-offline", tgz], app);
    const installed = path.join(app, "node_modules", pkg.name);
    expect((await fs.readdir(installed)).filter((f) => f !== "node_modules").sort()).toEqual([
      "LICENSE",
      "README.md",
      "dist",
      "package.json",
      "prompts",
      "tools",
    ]);
    const bin = path.join(app, "node_modules", ".bin", win ? `${pkg.name}.cmd` : pkg.name);
    const { stdout } = await exec(bin, ["--version"], { shell: win });
    expect(stdout.trim()).toBe(pkg.version);
    // init is bundled too (its JSON parser is a build-time dependency, not an installed one).
    const printed = await exec(bin, ["init", "--client", "vscode", "--print"], { cwd: ws, shell: win });
    expect(JSON.parse(printed.stdout).servers["backend-developer"].args).toContain(
      path.join(installed, "dist", "cli.js"),
    );
    await exercise(
      process.execPath,
      [path.join(installed, "dist", "cli.js"), "--workspace", ws, "--sandbox", "off"],
      app,
    );
  }, 180_000);

  test("npx <the .tgz> --version and --help run", async () => {
    // npx takes a path that starts with ./ as a package (an absolute path would be run as a command).
    const npx = win ? "npx.cmd" : "npx";
    const spec = `./${path.basename(tgz)}`;
    const version = await exec(npx, ["-y", spec, "--version"], { cwd: tmp, timeout: 180_000, shell: win });
    expect(version.stdout.trim()).toBe(pkg.version);
    const help = await exec(npx, ["-y", spec, "--help"], { cwd: tmp, timeout: 60_000, shell: win });
    expect(help.stdout).toContain(`Usage: ${pkg.name}`);
    expect(help.stdout).toContain("--workspace DIR");
  }, 240_000);

  test("the plugin's launcher, copied away from a clone (a remote marketplace), starts the npm package of its version, never the project's", async () => {
    // plugin/.mcp.json runs node ${CLAUDE_PLUGIN_ROOT}/bin/server.mjs. Outside a clone it runs
    // the npm package of its version installed into the plugin's own folder (.runtime/; here the tarball, installed there
    // beforehand as the launcher would on first start), never a package from the project's node_modules.
    const { mcpServers } = JSON.parse(await fs.readFile(path.join(ROOT, "plugin", ".mcp.json"), "utf8")) as {
      mcpServers: Record<string, { command: string; args: string[] }>;
    };
    const entry = mcpServers["backend-developer"]!;
    const copy = path.join(tmp, "plugin-cache", "backend-developer", pkg.version);
    await fs.cp(path.join(ROOT, "plugin"), copy, { recursive: true });
    await npm(
      [
        "install",
        "--no-save",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        "--prefix",
        path.join(copy, ".runtime"),
        tgz,
      ],
      copy,
    );
    const args = entry.args.map((a) => a.replace("${CLAUDE_PLUGIN_ROOT}", copy));
    // The project (the server's working folder) holds a planted package of the same name and version: never run.
    const project = await tempDir("bdm-pkg-project-");
    const planted = path.join(project, "node_modules", pkg.name);
    await fs.mkdir(path.join(planted, "dist"), { recursive: true });
    await fs.writeFile(
      path.join(planted, "package.json"),
      JSON.stringify({ name: pkg.name, version: pkg.version, bin: { [pkg.name]: "dist/cli.js" } }),
    );
    await fs.writeFile(
      path.join(planted, "dist", "cli.js"),
      `#!/usr/bin/env node\nrequire("fs").writeFileSync(${JSON.stringify(path.join(project, "PLANTED-RAN"))}, "x");\n`,
    );
    await exercise(
      entry.command === "node" ? process.execPath : entry.command,
      [...args, "--workspace", ws, "--sandbox", "off"],
      project,
    );
    await expect(fs.access(path.join(project, "PLANTED-RAN"))).rejects.toThrow();
    await fs.rm(project, { recursive: true, force: true });
  }, 240_000);
});

describe("Claude Desktop bundle (.mcpb)", () => {
  test("npm run bundle's script builds a valid bundle; unpacked, the server starts from it the way Claude Desktop starts it", async () => {
    const out = path.join(tmp, `${pkg.name}.mcpb`);
    const stage = path.join(tmp, "stage");
    await exec(
      process.execPath,
      [path.join(ROOT, "scripts", "bundle.mjs"), "--from", tgz, "--out", out, "--stage", stage],
      { cwd: ROOT, timeout: 240_000, maxBuffer: 64 << 20 },
    );

    const manifest = JSON.parse(await fs.readFile(path.join(stage, "manifest.json"), "utf8"));
    const validate = await exec(process.execPath, [MCPB, "validate", path.join(stage, "manifest.json")]);
    expect(validate.stdout).toContain("Manifest schema validation passes");
    expect(manifest).toMatchObject({
      manifest_version: "0.3",
      name: pkg.name,
      version: pkg.version,
      server: { type: "node", entry_point: "dist/cli.js" },
    });
    expect(manifest.user_config.workspace).toMatchObject({ type: "directory", required: true });
    expect(manifest.user_config.sandbox).toMatchObject({ type: "string", default: "auto" });
    expect(manifest.user_config.anthropic_api_key).toMatchObject({ type: "string", sensitive: true });
    expect(manifest.server.mcp_config.env.ANTHROPIC_API_KEY).toBe("${user_config.anthropic_api_key}");
    expect(manifest.tools.map((t: { name: string }) => t.name)).toEqual(
      expect.arrayContaining(["Read", "Run", "Task"]),
    );

    const unpacked = path.join(tmp, "unpacked");
    await exec(process.execPath, [MCPB, "unpack", out, unpacked]);
    for (const platform of ["darwin-arm64", "darwin-x64", "win32-x64", "linux-x64"])
      await fs.access(path.join(unpacked, "node_modules", "@vscode", `ripgrep-${platform}`, "bin"));
    // Claude Desktop substitutes ${__dirname} and ${user_config.*}; an empty optional key arrives as "".
    const values: Record<string, string> = {
      __dirname: unpacked,
      "user_config.workspace": ws,
      "user_config.sandbox": "auto",
      "user_config.anthropic_api_key": "",
    };
    const fill = (s: string) => s.replace(/\$\{([^}]+)\}/g, (_, k: string) => values[k] ?? `\${${k}}`);
    const { command, args, env } = manifest.server.mcp_config as {
      command: string;
      args: string[];
      env: Record<string, string>;
    };
    expect(command).toBe("node");
    await exercise(
      process.execPath,
      args.map(fill),
      os.tmpdir(),
      Object.fromEntries(Object.entries(env).map(([k, v]) => [k, fill(v)])),
    );
  }, 300_000);
});
