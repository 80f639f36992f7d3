// The command: options → sandbox, services and background commands → tools → the MCP server on stdio.
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ripgrepPath } from "./files/ripgrep.js";
import { keepPathOutside, Workspace } from "./files/workspace.js";
import { parseServerArgs, serverHelp, type ServerArgs } from "./options.js";
import { pkg } from "./paths.js";
import { loadCommands } from "./prompts.js";
import { BackgroundCommands } from "./sandbox/background.js";
import { backgroundToolsForAgents } from "./sandbox/background-view.js";
import { createSandbox, type Sandbox, sweepStaleTempFolders } from "./sandbox/sandbox.js";
import { createServer, fileTools, log } from "./server/server.js";
import { StdioTransport } from "./server/stdio.js";
import { jsonSchemas, type Tool } from "./server/tool.js";
import { Services } from "./services/index.js";
import { setModelOptions } from "./task/model-options.js";
import { createRunTool } from "./tools/run.js";
import { createTaskTools } from "./tools/task.js";

/** How long after the answer to initialize the start-up chores (stale temp sweeps) begin. */
const CHORES_DELAY_MS = 200;

function fail(message: string): never {
  process.stderr.write(`${pkg.name}: ${message}\n`);
  process.exit(2);
}

function parseOrExit(argv: string[]): ServerArgs {
  try {
    return parseServerArgs(argv);
  } catch (e) {
    fail((e as Error).message);
  }
}

/** The tools, and what must be closed when the server stops. */
function buildTools(o: ServerArgs, sandbox: Sandbox): { tools: Tool[]; close: () => Promise<void> } {
  const services = new Services({
    requests: o.service,
    reset: o["service-reset"],
    network: (root) => sandbox.network(root),
  });
  const serviceEnv = services.configured ? (root: string) => services.env(root) : undefined;
  const background = new BackgroundCommands({
    sandbox,
    allowEnv: o["allow-env"],
    maxCount: o["max-background"],
    maxLifetimeMs: o["background-timeout"] * 1000,
    serviceEnv,
  });
  const run = createRunTool({
    sandbox,
    allowEnv: o["allow-env"],
    maxConcurrent: o["max-commands"],
    serviceEnv,
    background,
  });
  const agentTools = [...fileTools, run];
  const taskTools = createTaskTools({
    tools: [...agentTools, ...backgroundToolsForAgents(background)],
    background,
    testCommand: o["test-command"],
    maxTokens: o["task-max-tokens"],
    timeoutMs: o["task-timeout"] * 1000,
    maxRuns: o["max-tasks"],
    taskWaitSeconds: o["task-wait"],
    maxBudgetUsd: o["max-budget-usd"],
    checksTmpdir: sandbox.tmpdir,
  });
  const close = async () => {
    await background.close().catch(() => undefined);
    await services.close().catch(() => undefined);
  };
  return { tools: [...agentTools, ...taskTools], close };
}

/** The stdio transport; what start-up can do without waits until initialize is answered. */
function transportFor(server: McpServer, tools: Tool[], chores: () => void): StdioTransport {
  const transport = new StdioTransport((message) => log(server, "warning", message));
  transport.onInitializeAnswered = () => {
    // tools/list usually comes next: its JSON Schemas are converted while the client reads the answer.
    setImmediate(() => tools.forEach(jsonSchemas));
    // Stale temp sweeps wait until the client's first requests are served.
    setTimeout(chores, CHORES_DELAY_MS).unref();
  };
  return transport;
}

async function main(): Promise<void> {
  if (process.argv[2] === "init") {
    process.exitCode = await (await import("./hosts/init.js")).init(process.argv.slice(3));
    return;
  }
  const o = parseOrExit(process.argv.slice(2));
  if (o.help) return void process.stdout.write(`${serverHelp()}\n`);
  if (o.version) return void process.stdout.write(`${pkg.version}\n`);

  setModelOptions({ thinking: o.thinking, web: o.web, webDomains: o["web-domain"], webMaxUses: o["web-max-uses"] });
  const workspace =
    o.workspace === undefined ? undefined : await Workspace.open(o.workspace).catch((e: Error) => fail(e.message));
  // Until a client root is known, the current folder is the workspace to keep off the PATH.
  if (!workspace) keepPathOutside(process.cwd());
  const network = o["allow-network"] || (o["allow-domain"].length ? o["allow-domain"] : false);
  let warn = (message: string) => log(undefined, "warning", message);
  const sandbox = await createSandbox({ mode: o.sandbox, network }, (m) => warn(m)).catch((e: Error) =>
    fail(e.message),
  );
  const { tools, close } = buildTools(o, sandbox);
  const notes = sandbox.warning ? [`Warning: ${sandbox.warning}.`] : [];
  const { server, tidy } = createServer({ workspace, tools, notes, commands: await loadCommands() });
  warn = (message) => log(server, "warning", message);

  let closing = false;
  const shutdown = async (code = 0) => {
    if (closing) return;
    closing = true;
    await close();
    await sandbox.close().catch(() => undefined);
    process.exit(code);
  };
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => void shutdown());
  server.server.onclose = () => void shutdown();
  process.stdin.on("end", () => void shutdown());
  const chores = () => {
    sweepStaleTempFolders(warn);
    tidy();
    ripgrepPath().catch((e: Error) => warn(`ripgrep is missing, so Grep and Glob will fail: ${e.message}`));
  };
  await server.connect(transportFor(server, tools, chores));
  if (sandbox.warning) log(undefined, "warning", sandbox.warning);
  const where = workspace?.root ?? "(the client's first root, else the current folder)";
  const names = tools.map((t) => t.name).join(", ");
  log(
    undefined,
    "info",
    `v${pkg.version} · workspace ${where} · sandbox ${sandbox.active ? "on" : "off"} · tools ${names}`,
  );
}

main().catch((e) => fail((e as Error).stack ?? String(e)));
