#!/usr/bin/env node
import { parseArgs } from "node:util";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { pkg } from "./paths.js";
import { createServer, log } from "./server.js";
import { Workspace } from "./workspace.js";

const HELP = `${pkg.name} ${pkg.version}: an MCP server (stdio) exposing a backend-developer agent.

Usage: ${pkg.name} [--workspace DIR] [options]

Options:
  -w, --workspace DIR   Folder the tools may read and write (default: the client's
                        first MCP root, else the current folder)
  -h, --help            Show this help
  -v, --version         Show the version

Tools: Read, Write, Edit, Grep, Glob. Logs go to stderr; stdout carries the protocol.`;

function fail(message: string): never {
  process.stderr.write(`${pkg.name}: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        workspace: { type: "string", short: "w" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "v" },
      },
      strict: true,
    }));
  } catch (e) {
    fail(`${(e as Error).message}\nRun with --help for usage.`);
  }
  if (values.help) return void process.stdout.write(`${HELP}\n`);
  if (values.version) return void process.stdout.write(`${pkg.version}\n`);

  const workspace = values.workspace === undefined ? undefined : await Workspace.open(values.workspace).catch((e: Error) => fail(e.message));
  const { server } = createServer({ workspace });
  await server.connect(new StdioServerTransport());
  log(undefined, "info", `v${pkg.version} · workspace ${workspace?.root ?? "(client root or current folder)"} · tools Read, Write, Edit, Grep, Glob`);
}

main().catch((e) => fail((e as Error).stack ?? String(e)));
