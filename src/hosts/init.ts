// `backend-developer-mcp init`: writes (or prints) the MCP configuration for one host, merged into the host's
// existing file without losing anything in it (merge-config.ts). The existing file is backed up first; a file that
// does not parse is reported and left untouched.
import { constants } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { InitError, mergeConfig } from "./merge-config.js";
import { parseServerArgs } from "../options.js";
import { packageRoot, pkg } from "../paths.js";
import { writeFileAtomic } from "../files/folders.js";

export const HOSTS = ["claude-code", "claude-desktop", "vscode", "cursor"] as const;
export type Host = (typeof HOSTS)[number];

export interface ServerEntry {
  type?: "stdio";
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Claude Code: the per-server tool-call limit in ms (progress does not extend it). */
  timeout?: number;
}

interface HostInfo {
  title: string;
  /** Where the host reads its configuration: a project file under the workspace, or a per-user file. */
  file: (workspace: string) => string;
  /** The object holding the servers, by name. */
  key: "mcpServers" | "servers";
  /** The host's documented entry shape has "type": "stdio". */
  typed: boolean;
  /** The host takes a per-server tool-call timeout ("timeout", ms) in the entry. */
  timeout: boolean;
  /** The host accepts JSON with comments and trailing commas (VS Code's mcp.json). */
  jsonc: boolean;
  /** Arguments that tell the server its workspace (none: the server takes the client's first MCP root, else its cwd). */
  workspaceArgs: (workspace: string) => string[];
  next: string;
}

/** Claude Desktop's configuration file on this platform. */
export function desktopConfigPath(
  platform: NodeJS.Platform = process.platform,
  env: NodeJS.ProcessEnv = process.env,
  home = os.homedir(),
): string {
  const dir =
    platform === "darwin"
      ? path.join(home, "Library", "Application Support")
      : platform === "win32"
        ? env.APPDATA || path.join(home, "AppData", "Roaming")
        : env.XDG_CONFIG_HOME || path.join(home, ".config");
  return path.join(dir, "Claude", "claude_desktop_config.json");
}

export const HOST_INFO: Record<Host, HostInfo> = {
  "claude-code": {
    title: "Claude Code",
    file: (ws) => path.join(ws, ".mcp.json"),
    key: "mcpServers",
    typed: true,
    timeout: true,
    jsonc: false,
    workspaceArgs: () => [],
    next: "Start `claude` in the project folder and approve the project's MCP server when asked (`claude mcp list` shows it). The entry's \"timeout\" lets a Task run for its whole --task-timeout.",
  },
  "claude-desktop": {
    title: "Claude Desktop",
    file: () => desktopConfigPath(),
    key: "mcpServers",
    typed: false,
    timeout: false,
    jsonc: false,
    workspaceArgs: (ws) => ["--workspace", ws],
    next: "Quit and restart Claude Desktop. Its tool-call time limit is fixed, so give Task small jobs. Task needs ANTHROPIC_API_KEY (pass --env ANTHROPIC_API_KEY=…), since Claude Desktop offers no MCP sampling.",
  },
  vscode: {
    title: "VS Code",
    file: (ws) => path.join(ws, ".vscode", "mcp.json"),
    key: "servers",
    typed: true,
    timeout: false,
    jsonc: true,
    workspaceArgs: () => ["--workspace", "${workspaceFolder}"],
    next: "Open the folder in VS Code, run “MCP: List Servers” and start the server. Without ANTHROPIC_API_KEY, Task uses VS Code's model through MCP sampling (VS Code asks once).",
  },
  cursor: {
    title: "Cursor",
    file: (ws) => path.join(ws, ".cursor", "mcp.json"),
    key: "mcpServers",
    typed: false,
    timeout: false,
    jsonc: false,
    workspaceArgs: () => [],
    next: "Open the folder in Cursor and enable the server under Settings → MCP. Cursor offers no MCP sampling, so Task needs ANTHROPIC_API_KEY in the server's env; Cursor ends tool calls after about 5 minutes.",
  },
};

const HELP = `Usage: ${pkg.name} init [--client HOST] [--workspace DIR] [options] [-- SERVER_OPTIONS...]

Writes the MCP configuration that starts this server for HOST, merged into the host's
existing file (backed up first as FILE.bak; nothing else in the file changes).

  --client HOST        claude-code (default)  DIR/.mcp.json, key mcpServers
                       claude-desktop         claude_desktop_config.json in the user's
                                              Claude folder, key mcpServers
                       vscode                 DIR/.vscode/mcp.json, key servers
                       cursor                 DIR/.cursor/mcp.json, key mcpServers
  -w, --workspace DIR  The project folder (default: the current folder). Project hosts get
                       their file there; Claude Desktop gets --workspace DIR
  --config PATH        Write PATH instead of the host's usual file
  --name NAME          The server's name in the file (default: backend-developer)
  --launcher KIND      node: run this installation's dist/cli.js with node; npx: run
                       npx -y ${pkg.name}@${pkg.version} (default: npx when this command
                       itself runs through npx, else node)
  --env NAME=VALUE     Add a variable to the server's environment (repeatable)
  --print              Print the configuration instead of writing it
  -h, --help           Show this help

Options after -- are passed to the server, e.g. -- --sandbox os --allow-domain registry.npmjs.org`;

export interface InitOptions {
  host: Host;
  workspace: string;
  name: string;
  launcher: "node" | "npx";
  env: Record<string, string>;
  serverArgs: string[];
}

/** The server entry for a host, in that host's documented shape. */
export function serverEntry(o: InitOptions): ServerEntry {
  const info = HOST_INFO[o.host];
  const args = [...info.workspaceArgs(o.workspace), ...o.serverArgs];
  let command: string;
  let launch: string[];
  if (o.launcher === "npx") {
    // Claude Code on native Windows needs cmd /c to start npx.
    const wrap = process.platform === "win32" && o.host === "claude-code";
    command = wrap ? "cmd" : "npx";
    launch = [...(wrap ? ["/c", "npx"] : []), "-y", `${pkg.name}@${pkg.version}`];
  } else {
    // Claude Desktop starts servers with a minimal PATH, so it gets node's absolute path.
    command = o.host === "claude-desktop" ? process.execPath : "node";
    launch = [path.join(packageRoot, "dist", "cli.js")];
  }
  const entry: ServerEntry = {
    ...(info.typed ? { type: "stdio" as const } : {}),
    command,
    args: [...launch, ...args],
    env: o.env,
  };
  if (info.timeout) {
    // A Task may run for --task-timeout; give the call a minute more than that.
    entry.timeout = (parseServerArgs(o.serverArgs)["task-timeout"] + 60) * 1000;
  }
  return entry;
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p, constants.F_OK).then(
    () => true,
    () => false,
  );
}

/** Copies a file to FILE.bak (or FILE.bak.1, .2, … when taken) and returns the backup's path. */
async function backup(file: string): Promise<string> {
  for (let i = 0; ; i++) {
    const target = `${file}.bak${i ? `.${i}` : ""}`;
    try {
      await fs.copyFile(file, target, constants.COPYFILE_EXCL);
      return target;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
  }
}

/** Replaces a file's content atomically, keeping its mode; follows a symlinked file to its target. */
async function writeAtomic(file: string, text: string): Promise<void> {
  const real = await fs.realpath(file).catch(() => file);
  await writeFileAtomic(real, text, await fs.stat(real).catch(() => undefined));
}

function parseCli(argv: string[]): (InitOptions & { config?: string; print: boolean }) | "help" {
  const dash = argv.indexOf("--");
  const own = dash === -1 ? argv : argv.slice(0, dash);
  const serverArgs = dash === -1 ? [] : argv.slice(dash + 1);
  const parse = () => {
    try {
      return parseArgs({
        args: own,
        options: {
          client: { type: "string", default: "claude-code" },
          workspace: { type: "string", short: "w" },
          config: { type: "string" },
          name: { type: "string", default: "backend-developer" },
          launcher: { type: "string" },
          env: { type: "string", multiple: true, default: [] },
          print: { type: "boolean", default: false },
          help: { type: "boolean", short: "h" },
        },
        strict: true,
        allowPositionals: false,
      });
    } catch (e) {
      throw new InitError(`${(e as Error).message}\nRun \`${pkg.name} init --help\` for usage.`, 2);
    }
  };
  const { values } = parse();
  if (values.help) return "help";
  const host = values.client as Host;
  if (!HOSTS.includes(host))
    throw new InitError(`--client must be one of ${HOSTS.join(", ")} (got "${values.client}")`, 2);
  const launcher = values.launcher ?? (packageRoot.split(path.sep).includes("_npx") ? "npx" : "node");
  if (launcher !== "node" && launcher !== "npx")
    throw new InitError(`--launcher must be node or npx (got "${launcher}")`, 2);
  if (!/^[A-Za-z0-9_-]+$/.test(values.name))
    throw new InitError(`--name may hold only letters, digits, "-" and "_" (got "${values.name}")`, 2);
  const env: Record<string, string> = {};
  for (const pair of values.env) {
    const eq = pair.indexOf("=");
    if (eq < 1) throw new InitError(`--env takes NAME=VALUE (got "${pair}")`, 2);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  try {
    parseServerArgs(serverArgs);
  } catch (e) {
    throw new InitError(`the server options after -- are not valid: ${(e as Error).message}`, 2);
  }
  return {
    host,
    workspace: path.resolve(values.workspace ?? "."),
    name: values.name,
    launcher,
    env,
    serverArgs,
    config: values.config,
    print: values.print,
  };
}

/** Runs `init` with the arguments that follow it; returns the exit code. */
export async function init(argv: string[]): Promise<number> {
  try {
    const o = parseCli(argv);
    if (o === "help") {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    const info = HOST_INFO[o.host];
    const stat = await fs.stat(o.workspace).catch(() => undefined);
    if (!stat?.isDirectory()) throw new InitError(`the workspace ${o.workspace} is not an existing folder`);
    const file = path.resolve(o.config ?? info.file(o.workspace));
    const entry = serverEntry(o);
    if (o.print) {
      process.stderr.write(`${info.title}: add this to ${file} (key "${info.key}")\n`);
      process.stdout.write(`${JSON.stringify({ [info.key]: { [o.name]: entry } }, null, 2)}\n`);
      return 0;
    }
    const existing = (await exists(file)) ? await fs.readFile(file, "utf8") : undefined;
    const merged = mergeConfig(existing, HOST_INFO[o.host], o.name, entry, file);
    let saved = "";
    if (merged.status !== "unchanged") {
      if (existing !== undefined) saved = ` (the previous file is saved as ${await backup(file)})`;
      await writeAtomic(file, merged.text);
    }
    const what = { created: "created it with", added: "added", replaced: "replaced", unchanged: "already has" }[
      merged.status
    ];
    process.stdout.write(
      `${info.title}: ${file}: ${what} the "${o.name}" server under "${info.key}"${saved}.\n${info.next}\n`,
    );
    return 0;
  } catch (e) {
    process.stderr.write(
      `${pkg.name} init: ${e instanceof InitError ? e.message : ((e as Error).stack ?? String(e))}\n`,
    );
    return e instanceof InitError ? e.exitCode : 1;
  }
}
