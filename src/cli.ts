#!/usr/bin/env node
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { BackgroundCommands, backgroundToolsForAgents } from "./background.js";
import { pkg } from "./paths.js";
import { parseServerArgs, serverHelp, type ServerArgs } from "./options.js";
import { createSandbox } from "./sandbox.js";
import { Services } from "./services/index.js";
import { createServer, fileTools, log } from "./server.js";
import { createRunTool } from "./tools/run.js";
import { createTaskTools } from "./tools/task.js";
import { Workspace } from "./workspace.js";

function fail(message: string): never {
  process.stderr.write(`${pkg.name}: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  if (process.argv[2] === "init") return void (process.exitCode = await (await import("./init.js")).init(process.argv.slice(3)));
  let o: ServerArgs;
  try {
    o = parseServerArgs(process.argv.slice(2));
  } catch (e) {
    fail((e as Error).message);
  }
  if (o.help) return void process.stdout.write(`${serverHelp()}\n`);
  if (o.version) return void process.stdout.write(`${pkg.version}\n`);

  const workspace = o.workspace === undefined ? undefined : await Workspace.open(o.workspace).catch((e: Error) => fail(e.message));
  const network = o["allow-network"] || (o["allow-domain"].length ? o["allow-domain"] : false);
  let warn = (message: string) => log(undefined, "warning", message);
  const sandbox = await createSandbox({ mode: o.sandbox, network }, (message) => warn(message)).catch((e: Error) => fail(e.message));
  // [services/background] background commands, the services' variables (src/background.ts, src/services/)
  const services = new Services({ requests: o.service, reset: o["service-reset"], network: (root) => sandbox.network(root) });
  const serviceEnv = services.configured ? (root: string) => services.env(root) : undefined;
  const background = new BackgroundCommands({ sandbox, allowEnv: o["allow-env"], maxCount: o["max-background"], maxLifetimeMs: o["background-timeout"] * 1000, serviceEnv });
  const agentTools = [...fileTools, createRunTool({ sandbox, allowEnv: o["allow-env"], maxConcurrent: o["max-commands"], serviceEnv, background })];
  const taskConfig = {
    tools: [...agentTools, ...backgroundToolsForAgents(background)],
    background,
    testCommand: o["test-command"],
    maxTokens: o["task-max-tokens"],
    timeoutMs: o["task-timeout"] * 1000,
    maxRuns: o["max-tasks"],
    taskWaitSeconds: o["task-wait"],
    maxBudgetUsd: o["max-budget-usd"],
  };
  const tools = [...agentTools, ...createTaskTools(taskConfig)];
  const { server } = createServer({ workspace, tools, notes: sandbox.warning ? [`Warning: ${sandbox.warning}.`] : [] });
  warn = (message) => log(server, "warning", message);

  let closing = false;
  const shutdown = async (code = 0) => {
    if (closing) return;
    closing = true;
    await background.close().catch(() => undefined);
    await services.close().catch(() => undefined);
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
