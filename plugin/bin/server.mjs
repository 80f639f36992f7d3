#!/usr/bin/env node
// Starts the backend-developer MCP server for the Claude Code plugin; stdout carries only the protocol.
// - In a clone of the repository (a local marketplace, which Claude Code runs in place): the clone's own build.
// - Elsewhere (the plugin copied from a remote marketplace): the npm package of the plugin's own version.
import { spawn } from "node:child_process";
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
    process.stderr.write(`${NAME}: the server is not built in ${clone}. Run \`npm ci && npm run build\` there, then restart Claude Code.\n`);
    process.exit(1);
  }
  await import(pathToFileURL(cli).href);
} else {
  const { version } = readJson(path.join(plugin, ".claude-plugin", "plugin.json")) ?? {};
  const npx = process.platform === "win32" ? "npx.cmd" : "npx";
  // --prefix: npm must not take a matching package from the project's node_modules, nor read its .npmrc (the project is
  // untrusted and this runs outside any sandbox); the server still runs in the current folder.
  const child = spawn(npx, ["-y", "--prefix", plugin, `${NAME}@${version}`, ...process.argv.slice(2)], { stdio: "inherit" });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("error", (e) => {
    process.stderr.write(`${NAME}: could not start npx: ${e.message}\n`);
    process.exit(1);
  });
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
