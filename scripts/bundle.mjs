// Builds the Claude Desktop extension: an MCP Bundle (.mcpb) made with @anthropic-ai/mcpb from the npm package.
//   1. npm pack (or --from a .tgz already packed): exactly the files the npm package ships
//   2. its production dependencies from package-lock.json (npm ci --omit=dev), plus ripgrep for every desktop platform
//   3. manifest.json generated from package.json and the built server's tool list, checked with `mcpb validate`
//   4. `mcpb pack` -> build/backend-developer-mcp-<version>.mcpb
// Usage: npm run bundle  (builds first), or node scripts/bundle.mjs [--from PKG.tgz] [--out FILE.mcpb] [--stage DIR]
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { askServer } from "./ask-server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const mcpbCli = path.join(root, "node_modules", "@anthropic-ai", "mcpb", "dist", "cli", "cli.js");
/** Platforms Claude Desktop runs on (and Linux), as @vscode/ripgrep's per-platform package suffixes. */
const RG_PLATFORMS = ["darwin-arm64", "darwin-x64", "win32-x64", "win32-arm64", "linux-x64", "linux-arm64"];

function run(command, args, options = {}) {
  const npm = command === "npm" && process.env.npm_execpath?.endsWith(".js");
  const r = spawnSync(npm ? process.execPath : command, npm ? [process.env.npm_execpath, ...args] : args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    shell: process.platform === "win32" && !npm,
    ...options,
  });
  if (r.status !== 0)
    throw new Error(
      `${command} ${args.join(" ")} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}${r.stdout}`,
    );
  return r.stdout;
}

/** The manifest (MCPB manifest_version 0.3) for a package, with the tools the built server lists. */
export function manifest(pkg, tools) {
  return {
    manifest_version: "0.3",
    name: pkg.name,
    display_name: "Backend developer",
    version: pkg.version,
    description: pkg.description,
    long_description:
      "A backend-developer agent confined to one workspace folder: Read, Write, Edit, Grep and Glob with Claude Code's semantics, Run for shell commands in an OS sandbox (sandbox-exec on macOS, bubblewrap on Linux), and Task, which hands a whole backend task to a sub-agent and verifies the result by type-checking and running the tests itself. Task uses the Anthropic API, so it needs an API key.",
    author: { name: `${pkg.name} maintainers` },
    license: pkg.license,
    keywords: ["backend", "agent", "sandbox", "mcp"],
    server: {
      type: "node",
      entry_point: "dist/cli.js",
      mcp_config: {
        command: "node",
        args: [
          "${__dirname}/dist/cli.js",
          "--workspace",
          "${user_config.workspace}",
          "--sandbox",
          "${user_config.sandbox}",
        ],
        env: { ANTHROPIC_API_KEY: "${user_config.anthropic_api_key}" },
      },
    },
    tools: tools.map((t) => ({ name: t.name, description: t.description.split("\n")[0] })),
    prompts_generated: true,
    compatibility: { platforms: ["darwin", "win32", "linux"], runtimes: { node: pkg.engines?.node ?? ">=20" } },
    user_config: {
      workspace: {
        type: "directory",
        title: "Workspace folder",
        description: "The project folder the tools may read and write. Nothing outside it is reachable.",
        required: true,
      },
      sandbox: {
        type: "string",
        title: "Sandbox mode",
        description:
          "OS sandbox for Run: auto (on where available, else off with a warning), os (refuse to start without it) or off.",
        default: "auto",
        required: false,
      },
      anthropic_api_key: {
        type: "string",
        title: "Anthropic API key",
        description:
          "Used by Task to run its sub-agent (Claude Desktop offers no MCP sampling). The file and shell tools work without it.",
        sensitive: true,
        required: false,
      },
    },
  };
}

function serverTools(cli) {
  return askServer(cli, async (client) => (await client.listTools()).tools);
}

/** Extracts an npm tarball (package/…) into dir. */
function untar(tgz, dir) {
  run("tar", ["-xzf", tgz, "-C", dir, "--strip-components=1"]);
}

/** Builds the bundle; returns the .mcpb path and the staging folder it was packed from. */
export async function bundle({ from, out, stage, log = () => undefined } = {}) {
  const pkg = JSON.parse(await fs.readFile(path.join(root, "package.json"), "utf8"));
  const build = path.join(root, "build");
  stage = path.resolve(stage ?? path.join(build, "mcpb"));
  out = path.resolve(out ?? path.join(build, `${pkg.name}-${pkg.version}.mcpb`));
  await fs.rm(stage, { recursive: true, force: true });
  await fs.mkdir(stage, { recursive: true });

  let tgz = from && path.resolve(from);
  if (!tgz) {
    log("npm pack");
    // dist/ is built already (npm run bundle builds first), so prepack's build is skipped.
    await fs.mkdir(build, { recursive: true });
    const [info] = JSON.parse(
      run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", build], { cwd: root }),
    );
    tgz = path.join(build, info.filename);
  }
  untar(tgz, stage);

  log("production dependencies (npm ci --omit=dev)");
  await fs.copyFile(path.join(root, "package-lock.json"), path.join(stage, "package-lock.json"));
  run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: stage });

  // ripgrep ships as one npm package per platform; npm installed only this machine's. Add the others.
  const rg = JSON.parse(
    await fs.readFile(path.join(stage, "node_modules", "@vscode", "ripgrep", "package.json"), "utf8"),
  );
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "bundle-rg-"));
  try {
    for (const platform of RG_PLATFORMS) {
      const name = `@vscode/ripgrep-${platform}`;
      const dir = path.join(stage, "node_modules", "@vscode", `ripgrep-${platform}`);
      if (await fs.stat(dir).catch(() => undefined)) continue;
      log(`ripgrep for ${platform}`);
      const [info] = JSON.parse(
        run(
          "npm",
          ["pack", "--json", "--prefer-offline", "--pack-destination", tmp, `${name}@${rg.optionalDependencies[name]}`],
          { cwd: tmp },
        ),
      );
      await fs.mkdir(dir, { recursive: true });
      untar(path.join(tmp, info.filename), dir);
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }

  log("manifest.json");
  const tools = await serverTools(path.join(stage, "dist", "cli.js"));
  await fs.writeFile(path.join(stage, "manifest.json"), `${JSON.stringify(manifest(pkg, tools), null, 2)}\n`);
  // Files of the dependencies that nothing loads at run time (type declarations, TypeScript sources, docs).
  await fs.writeFile(
    path.join(stage, ".mcpbignore"),
    [
      "node_modules/**/*.d.mts",
      "node_modules/**/*.d.cts",
      "node_modules/**/*.ts",
      "node_modules/**/*.md",
      "node_modules/.package-lock.json",
      "",
    ].join("\n"),
  );
  run(process.execPath, [mcpbCli, "validate", path.join(stage, "manifest.json")]);

  log("mcpb pack");
  await fs.mkdir(path.dirname(out), { recursive: true });
  run(process.execPath, [mcpbCli, "pack", stage, out]);
  return { file: out, stage };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { from: { type: "string" }, out: { type: "string" }, stage: { type: "string" } },
  });
  const started = Date.now();
  const { file } = await bundle({ ...values, log: (step) => console.error(`bundle: ${step}`) });
  const { size } = await fs.stat(file);
  console.log(
    `${path.relative(process.cwd(), file)} (${(size / 1e6).toFixed(1)} MB, ${((Date.now() - started) / 1000).toFixed(0)} s)`,
  );
}
