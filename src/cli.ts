#!/usr/bin/env node
import { parseArgs } from "node:util";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { pkg } from "./paths.js";
import { createSandbox, type SandboxMode } from "./sandbox.js";
import { createServer, fileTools, log } from "./server.js";
import { createRunTool } from "./tools/run.js";
import { createTaskTools } from "./tools/task.js";
import { Workspace } from "./workspace.js";

const HELP = `${pkg.name} ${pkg.version}: an MCP server (stdio) exposing a backend-developer agent.

Usage: ${pkg.name} [--workspace DIR] [options]

Options:
  -w, --workspace DIR   Folder the tools may read and write (default: the client's
                        first MCP root, else the current folder)
  --sandbox MODE        OS sandbox for Run: auto (default: on when bubblewrap/socat or
                        sandbox-exec are available, else off with a warning), os (required:
                        refuse to start without it), off
  --allow-network       Let sandboxed commands use the network (default: no network)
  --allow-domain HOST   Let sandboxed commands reach HOST (repeatable); others stay blocked
  --allow-env NAME      Pass the server's variable NAME to commands (repeatable); secrets
                        (*_KEY, *TOKEN*, *SECRET*, *PASSWORD*) are withheld unless named
  --max-commands N      Commands that may run at once (default 4)
  --test-command CMD    Replaces the root project's test check in Task's verification
                        (default: detected per stack; see the README's Verification section)
  --task-max-tokens N   Token budget of one Task run (default 3000000)
  --task-timeout SEC    Wall-time budget of one Task run (default 1800)
  --task-wait SEC       How long a Task call waits before it returns "running" and the run
                        goes on in the background (default 45; 0: always; none: never)
  --max-tasks N         Task runs at once (default 2; more wait for a slot)
  --max-budget-usd X    Default cost limit of one Task run, in US dollars (default: none)

Task uses the Anthropic API when ANTHROPIC_API_KEY is set (ANTHROPIC_BASE_URL and
BACKEND_AGENT_MODEL are honoured), else the client's model through MCP sampling.
  -h, --help            Show this help
  -v, --version         Show the version

Tools: Read, Write, Edit, Grep, Glob, Run, Task, TaskOutput, TaskStop. Logs go to stderr; stdout carries the protocol.
Set-up for a client: ${pkg.name} init --help`;

function fail(message: string): never {
  process.stderr.write(`${pkg.name}: ${message}\n`);
  process.exit(2);
}

function positive(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) fail(`${flag} must be a whole number of at least 1 (got "${value}")`);
  return n;
}

async function main(): Promise<void> {
  if (process.argv[2] === "init") return void (process.exitCode = await (await import("./init.js")).init(process.argv.slice(3)));
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        workspace: { type: "string", short: "w" },
        sandbox: { type: "string", default: "auto" },
        "allow-network": { type: "boolean", default: false },
        "allow-domain": { type: "string", multiple: true, default: [] },
        "allow-env": { type: "string", multiple: true, default: [] },
        "max-commands": { type: "string", default: "4" },
        "test-command": { type: "string" },
        "task-max-tokens": { type: "string", default: "3000000" },
        "task-timeout": { type: "string", default: "1800" },
        "task-wait": { type: "string", default: "45" },
        "max-tasks": { type: "string", default: "2" },
        "max-budget-usd": { type: "string" },
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

  const mode = values.sandbox as SandboxMode;
  if (!["auto", "os", "off"].includes(mode)) fail(`--sandbox must be auto, os or off (got "${mode}")`);
  const maxConcurrent = positive(values["max-commands"], "--max-commands");
  const maxTokens = positive(values["task-max-tokens"], "--task-max-tokens");
  const timeoutMs = positive(values["task-timeout"], "--task-timeout") * 1000;
  const maxRuns = positive(values["max-tasks"], "--max-tasks");
  const wait = values["task-wait"];
  const taskWaitSeconds = wait === "none" ? null : wait === "0" ? 0 : positive(wait, "--task-wait");
  const maxBudgetUsd = values["max-budget-usd"] === undefined ? undefined : Number(values["max-budget-usd"]);
  if (maxBudgetUsd !== undefined && !(maxBudgetUsd > 0)) fail(`--max-budget-usd must be a positive number (got "${values["max-budget-usd"]}")`);

  const workspace = values.workspace === undefined ? undefined : await Workspace.open(values.workspace).catch((e: Error) => fail(e.message));
  const network = values["allow-network"] || (values["allow-domain"].length ? values["allow-domain"] : false);
  let warn = (message: string) => log(undefined, "warning", message);
  const sandbox = await createSandbox({ mode, network }, (message) => warn(message)).catch((e: Error) => fail(e.message));
  const agentTools = [...fileTools, createRunTool({ sandbox, allowEnv: values["allow-env"], maxConcurrent })];
  const tools = [...agentTools, ...createTaskTools({ tools: agentTools, testCommand: values["test-command"], checksTmpdir: sandbox.tmpdir, maxTokens, timeoutMs, maxRuns, taskWaitSeconds, maxBudgetUsd })];
  const { server } = createServer({ workspace, tools, notes: sandbox.warning ? [`Warning: ${sandbox.warning}.`] : [] });
  warn = (message) => log(server, "warning", message);

  let closing = false;
  const shutdown = async (code = 0) => {
    if (closing) return;
    closing = true;
    await sandbox.close().catch(() => undefined);
    process.exit(code);
  };
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => void shutdown());
  server.server.onclose = () => void shutdown();
  process.stdin.on("end", () => void shutdown());
  await server.connect(new StdioServerTransport());
  if (sandbox.warning) log(undefined, "warning", sandbox.warning);
  log(undefined, "info", `v${pkg.version} · workspace ${workspace?.root ?? "(the client's first root, else the current folder)"} · sandbox ${sandbox.active ? "on" : "off"} · tools ${tools.map((t) => t.name).join(", ")}`);
}

main().catch((e) => fail((e as Error).stack ?? String(e)));
