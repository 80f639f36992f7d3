import { fileURLToPath } from "node:url";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type LoggingLevel,
  type ServerNotification,
} from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import { z } from "zod";
import { pkg } from "../paths.js";
import { type Command, instructions, render, roleText } from "../prompts.js";
import { elicitAnswer } from "./elicit.js";
import { callTool, errorResult, jsonSchemas, type Tool, type ToolContext } from "./tool.js";
import edit from "../tools/edit.js";
import glob from "../tools/glob.js";
import grep from "../tools/grep.js";
import read from "../tools/read.js";
import write from "../tools/write.js";
import { Workspace } from "../files/workspace.js";

export const fileTools: Tool[] = [read, write, edit, grep, glob];

export interface ServerOptions {
  /** Open workspace, or undefined to take the client's first root (else the current folder). */
  workspace?: Workspace;
  tools?: Tool[];
  /** Extra lines for the instructions, e.g. a sandbox warning. */
  notes?: string[];
  /** The quick commands (loadCommands), served as prompts. */
  commands: Command[];
}

const PROGRESS_INTERVAL_MS = 250;

export function log(server: McpServer | undefined, level: LoggingLevel, message: string): void {
  process.stderr.write(`[${pkg.name}] ${level}: ${message}\n`);
  if (server?.isConnected())
    server.sendLoggingMessage({ level, logger: pkg.name, data: message }).catch(() => undefined);
}

/** Progress notifications for one request, at most one per interval, the latest message winning. */
function progressReporter(token: string | number | undefined, send: (n: ServerNotification) => Promise<void>) {
  let count = 0;
  let last = 0;
  let pending: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (pending === undefined || token === undefined) return;
    last = Date.now();
    send({
      method: "notifications/progress",
      params: { progressToken: token, progress: ++count, message: pending },
    }).catch(() => undefined);
    pending = undefined;
  };
  return {
    report(message: string) {
      if (token === undefined) return;
      pending = message;
      const wait = PROGRESS_INTERVAL_MS - (Date.now() - last);
      if (wait <= 0) flush();
      else timer ??= setTimeout(flush, wait);
    },
    stop: () => timer && clearTimeout(timer),
  };
}

/** The SDK's default validator (Ajv with formats), built on first use: only elicitation needs it, start-up does not. */
function lazyValidator(): jsonSchemaValidator {
  let ajv: AjvJsonSchemaValidator | undefined;
  return { getValidator: (schema) => (ajv ??= new AjvJsonSchemaValidator()).getValidator(schema) };
}

export interface CreatedServer {
  server: McpServer;
  workspace: () => Promise<Workspace>;
  /** Starts removing stale temp files from the workspace given at start, if any (a start-up chore, run later). */
  tidy: () => void;
}

export function createServer(options: ServerOptions): CreatedServer {
  const tools = options.tools ?? fileTools;
  const server = new McpServer(
    { name: pkg.name, version: pkg.version },
    {
      capabilities: { tools: {}, logging: {} },
      instructions: [instructions(), ...(options.notes ?? [])].join("\n"),
      jsonSchemaValidator: lazyValidator(),
    },
  );

  let workspace: Promise<Workspace> | undefined = options.workspace && Promise.resolve(options.workspace);
  const getWorkspace = () => (workspace ??= resolveFromRoots(server).then((ws) => tidy(server, ws)));

  server.server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: tools.map((t) => {
      const { input, output } = jsonSchemas(t);
      return {
        name: t.name,
        title: t.title,
        description: t.description,
        inputSchema: input,
        ...(output && { outputSchema: output }),
        annotations: { title: t.title, ...t.annotations },
      };
    }),
  }));

  server.server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = tools.find((t) => t.name === request.params.name);
    if (!tool)
      throw new McpError(
        ErrorCode.InvalidParams,
        `Unknown tool "${request.params.name}". Available tools: ${tools.map((t) => t.name).join(", ")}.`,
      );
    const ws = await getWorkspace().catch((e: Error) => {
      workspace = undefined;
      return e;
    });
    if (ws instanceof Error)
      return errorResult(
        `No workspace: ${ws.message}. Start the server with --workspace DIR, or give the client a folder root.`,
      );
    const progress = progressReporter(extra._meta?.progressToken, extra.sendNotification);
    try {
      const ctx: ToolContext = {
        ws,
        signal: extra.signal,
        progress: progress.report,
        server: server.server,
        ask: (question, options) => elicitAnswer(server.server, question, options),
      };
      return await callTool(tool, request.params.arguments, ctx);
    } finally {
      progress.stop();
    }
  });

  registerPrompts(server, options.commands);
  return { server, workspace: getWorkspace, tidy: () => options.workspace && tidy(server, options.workspace) };
}

/** Starts removing what a killed server left in the workspace (in the background); returns ws. */
function tidy(server: McpServer, ws: Workspace): Workspace {
  ws.removeStaleTemps().then(
    (n) =>
      n &&
      log(server, "info", `removed ${n} stale temp files (.<name>.<hex>.tmp, older than 10 minutes) from ${ws.root}`),
    (e: Error) => log(server, "warning", `could not look for stale temp files: ${e.message}`),
  );
  return ws;
}

async function resolveFromRoots(server: McpServer): Promise<Workspace> {
  if (server.server.getClientCapabilities()?.roots) {
    const { roots } = await server.server.listRoots();
    const first = roots.find((r) => r.uri.startsWith("file://"));
    if (first) {
      const ws = await Workspace.open(fileURLToPath(first.uri));
      log(server, "info", `workspace from client root: ${ws.root}`);
      return ws;
    }
  }
  return Workspace.open(process.cwd());
}

function registerPrompts(server: McpServer, commands: Command[]): void {
  const role = roleText();
  server.registerPrompt(
    "backend-developer",
    {
      title: "Backend developer role",
      description: "The backend-developer agent's role definition as a system prompt, optionally with a task",
      argsSchema: { task: z.string().optional().describe("The backend task to hand to the agent") },
    },
    ({ task }) => ({
      messages: [{ role: "user", content: { type: "text", text: task ? `${role}\n\n## Task\n${task}` : role } }],
    }),
  );
  for (const cmd of commands) {
    const argsSchema = Object.fromEntries(
      (cmd.meta.arguments ?? []).map((a) => [
        a.name,
        (a.required ? z.string() : z.string().optional()).describe(a.description),
      ]),
    );
    server.registerPrompt(
      cmd.name,
      { description: cmd.meta.description, argsSchema },
      (args: Record<string, string | undefined>) => ({
        description: cmd.meta.description,
        messages: [{ role: "user", content: { type: "text", text: render(cmd.body, args) } }],
      }),
    );
  }
  server.registerResource(
    "backend-developer-role",
    "backend-developer://agents/backend-developer.md",
    {
      title: "Backend developer agent definition",
      mimeType: "text/markdown",
      description: "The agent definition (front matter + system prompt) that Task uses by default",
    },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/markdown", text: role }] }),
  );
}
