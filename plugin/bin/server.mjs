#!/usr/bin/env node
// Starts the backend-developer MCP server for the Claude Code plugin; stdout carries only the protocol.
// - In a clone of the repository (a local marketplace, which Claude Code runs in place): the clone's own build.
// - Elsewhere (the plugin copied from a remote marketplace): the npm package of the plugin's own version, installed
//   into the plugin's folder on first start.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const NAME = "backend-developer-mcp";
const plugin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const clone = path.dirname(plugin);
const readJson = (file) => {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
};

if (readJson(path.join(clone, "package.json"))?.name === NAME) {
  const cli = path.join(clone, "dist", "cli.js");
  if (!existsSync(cli)) {
    process.stderr.write(
      `${NAME}: the server is not built in ${clone}. Run \`npm ci && npm run build\` there, then restart Claude Code.\n`,
    );
    process.exit(1);
  }
  await import(pathToFileURL(cli).href);
} else {
  await startInstalled();
}

/**
 * Outside a clone: the npm package of the plugin's own version, installed once into the plugin's folder (.runtime/) and
 * run from there. Never through npx in the project folder: npx would prefer a matching package in the project's
 * node_modules and read its .npmrc, and the project is untrusted while this runs outside any sandbox.
 */
async function startInstalled() {
  const { version } = readJson(path.join(plugin, ".claude-plugin", "plugin.json")) ?? {};
  const runtime = path.join(plugin, ".runtime");
  const installed = path.join(runtime, "node_modules", NAME);
  if (readJson(path.join(installed, "package.json"))?.version !== version) {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    // npm's own output goes to stderr: stdout belongs to the protocol.
    const install = spawnSync(
      npm,
      ["install", "--no-save", "--no-audit", "--no-fund", "--prefix", runtime, `${NAME}@${version}`],
      {
        cwd: plugin,
        stdio: ["ignore", 2, 2],
        shell: process.platform === "win32",
      },
    );
    if (install.status !== 0) {
      process.stderr.write(
        `${NAME}: could not install ${NAME}@${version} into ${runtime} (npm exited ${install.status}).\n`,
      );
      process.exit(1);
    }
  }
  await import(pathToFileURL(path.join(installed, "dist", "cli.js")).href);
}
