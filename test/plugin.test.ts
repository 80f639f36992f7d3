// The Claude Code plugin and marketplace: generated from prompts/ and current, in agreement with the server's MCP
// prompts and tools, accepted by `claude plugin validate --strict`, and installable with `claude plugin marketplace add`
// + `claude plugin install`. Claude Code (a devDependency) runs offline here, with HOME in a temp folder.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, type Connection, QUICK_COMMANDS, tempDir } from "./helpers.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const PLUGIN = path.join(ROOT, "plugin");
const pkg = JSON.parse(await fs.readFile(path.join(ROOT, "package.json"), "utf8")) as { name: string; version: string };
const PREFIX = "mcp__plugin_backend-developer_backend-developer__";
const exec = promisify(execFile);

function frontMatter(text: string): { meta: Record<string, unknown>; body: string } {
  const m = /^---\n([\s\S]*?)\n---\n([\s\S]*)$/.exec(text);
  if (!m) throw new Error("no front matter");
  return { meta: parse(m[1]!) as Record<string, unknown>, body: m[2]! };
}

/** The Claude Code binary: the platform package's (what the wrapper's postinstall copies), else the wrapper's bin. */
function claudeBinary(): string {
  const exe = process.platform === "win32" ? "claude.exe" : "claude";
  const candidates = [
    path.join(ROOT, "node_modules", "@anthropic-ai", `claude-code-${process.platform}-${process.arch}`, exe),
    path.join(ROOT, "node_modules", "@anthropic-ai", `claude-code-${process.platform}-${process.arch}-musl`, exe),
    path.join(ROOT, "node_modules", "@anthropic-ai", "claude-code", "bin", "claude.exe"),
  ];
  const found = candidates.find((c) => existsSync(c));
  if (!found)
    throw new Error("Claude Code is not installed: npm ci installs it (devDependency @anthropic-ai/claude-code)");
  return found;
}

let home: string;
let c: Connection;
beforeAll(async () => {
  home = await tempDir("bdm-plugin-home-");
  c = await connect(["--workspace", home, "--sandbox", "off"]);
});
afterAll(async () => {
  await c?.close();
  await fs.rm(home, { recursive: true, force: true });
});

/** Runs Claude Code with its configuration in the temp home, offline-friendly. */
async function claude(args: string[]): Promise<{ code: number; out: string }> {
  const env = {
    ...process.env,
    HOME: home,
    USERPROFILE: home,
    CLAUDE_CONFIG_DIR: path.join(home, ".claude"),
    DISABLE_AUTOUPDATER: "1",
    DISABLE_TELEMETRY: "1",
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
  };
  try {
    const { stdout, stderr } = await exec(claudeBinary(), args, { env, cwd: home, timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: `${err.stdout}${err.stderr}` };
  }
}

describe("generated from one source", () => {
  test("the plugin files are current (npm run plugin regenerates them)", async () => {
    const r = await exec(process.execPath, [path.join(ROOT, "scripts", "plugin.mjs"), "--check"]).catch(
      (e: { stderr: string; code: number }) => e,
    );
    expect(r.stderr).toBe("");
  });

  test("commands/ holds exactly the MCP quick-command prompts, with the same names, descriptions and arguments", async () => {
    const { prompts } = await c.client.listPrompts();
    const quick = prompts.filter((p) => p.name !== "backend-developer");
    expect(quick.map((p) => p.name).sort()).toEqual(QUICK_COMMANDS);
    const files = (await fs.readdir(path.join(PLUGIN, "commands"))).sort();
    expect(files).toEqual(quick.map((p) => `${p.name}.md`).sort());
    for (const p of quick) {
      const { meta, body } = frontMatter(await fs.readFile(path.join(PLUGIN, "commands", `${p.name}.md`), "utf8"));
      expect(meta.description, p.name).toBe(p.description);
      const hint = (p.arguments ?? []).map((a) => (a.required ? `<${a.name}>` : `[${a.name}]`)).join(" ");
      expect(meta["argument-hint"], p.name).toBe(hint);
      expect(body).toContain("$ARGUMENTS");
      expect(body).toContain('subagent_type "backend-developer:backend-developer"');
      for (const a of p.arguments ?? [])
        expect(body).toContain(`- ${a.name}${a.required ? "" : " (optional)"}: ${a.description}`);
      // The prompt's own text, with {{arg}} placeholders as <arg>.
      const { messages } = await c.client.getPrompt({
        name: p.name,
        arguments: Object.fromEntries((p.arguments ?? []).map((a) => [a.name, `<${a.name}>`])),
      });
      const text = (messages[0]!.content as { text: string }).text;
      expect(body).toContain(text.trim());
    }
  });

  test("the agent is the backend-developer role with this server's MCP tools only", async () => {
    const { meta, body } = frontMatter(await fs.readFile(path.join(PLUGIN, "agents", "backend-developer.md"), "utf8"));
    const source = frontMatter(await fs.readFile(path.join(ROOT, "prompts", "agents", "backend-developer.md"), "utf8"));
    expect(meta.name).toBe("backend-developer");
    expect(meta.description).toBe(source.meta.description);
    const tools = String(meta.tools)
      .split(",")
      .map((t) => t.trim());
    const served = (await c.client.listTools()).tools.map((t) => t.name);
    expect(tools.length).toBeGreaterThan(0);
    for (const t of tools) {
      expect(t.startsWith(PREFIX), t).toBe(true);
      expect(served).toContain(t.slice(PREFIX.length));
    }
    expect(tools).toEqual(
      expect.arrayContaining(["Read", "Write", "Edit", "Grep", "Glob", "Run"].map((t) => PREFIX + t)),
    );
    expect(tools.some((t) => /__Task/.test(t))).toBe(false);
    expect(body).toContain("You are a backend engineer");
  });

  test(".mcp.json starts the plugin's launcher; plugin.json and the marketplace carry the same version", async () => {
    const mcp = JSON.parse(await fs.readFile(path.join(PLUGIN, ".mcp.json"), "utf8"));
    expect(mcp).toEqual({
      mcpServers: {
        "backend-developer": { command: "node", args: ["${CLAUDE_PLUGIN_ROOT}/bin/server.mjs"], timeout: 1_860_000 },
      },
    });
    const manifest = JSON.parse(await fs.readFile(path.join(PLUGIN, ".claude-plugin", "plugin.json"), "utf8"));
    expect(manifest).toMatchObject({ name: "backend-developer", version: pkg.version });
    const market = JSON.parse(await fs.readFile(path.join(ROOT, ".claude-plugin", "marketplace.json"), "utf8"));
    expect(market).toMatchObject({
      name: pkg.name,
      plugins: [{ name: "backend-developer", source: "./plugin", version: pkg.version }],
    });
  });
});

describe("Claude Code", () => {
  test("claude plugin validate --strict passes on the plugin and on the marketplace", async () => {
    const plugin = await claude(["plugin", "validate", "--strict", PLUGIN]);
    expect(plugin.out).toContain("Validation passed");
    expect(plugin.code).toBe(0);
    const market = await claude(["plugin", "validate", "--strict", ROOT]);
    expect(market.out).toContain("Validating marketplace manifest");
    expect(market.out).toContain("Validation passed");
    expect(market.code).toBe(0);
  });

  test("marketplace add + plugin install is the whole set-up: the agent, the commands and the MCP server are there", async () => {
    const add = await claude(["plugin", "marketplace", "add", ROOT]);
    expect(add.out).toContain(`Successfully added marketplace: ${pkg.name}`);
    const install = await claude(["plugin", "install", `backend-developer@${pkg.name}`]);
    expect(install.out).toContain("Successfully installed plugin");
    expect(install.code).toBe(0);
    const details = await claude(["plugin", "details", `backend-developer@${pkg.name}`]);
    expect(details.code).toBe(0);
    expect(details.out).toMatch(/Agents \(1\)\s+backend-developer/);
    expect(details.out).toMatch(/MCP servers \(1\)\s+backend-developer/);
    for (const name of QUICK_COMMANDS) expect(details.out).toContain(name);
    // Installed from a clone, the plugin runs in place on the clone's own build: the server connects, nothing published.
    const health = await claude(["mcp", "list"]);
    expect(health.out).toContain(
      `plugin:backend-developer:backend-developer: node ${PLUGIN}/bin/server.mjs - ✔ Connected`,
    );
    // The installed copy is the plugin folder as generated.
    const cached = path.join(home, ".claude", "plugins", "cache", pkg.name, "backend-developer", pkg.version);
    expect(await fs.readFile(path.join(cached, "agents", "backend-developer.md"), "utf8")).toBe(
      await fs.readFile(path.join(PLUGIN, "agents", "backend-developer.md"), "utf8"),
    );
  });
});
