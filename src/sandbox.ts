import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { rgPath } from "@vscode/ripgrep";

export type SandboxMode = "auto" | "os" | "off";

export interface SandboxOptions {
  mode: SandboxMode;
  /** true: all network; string[]: only these domains; false: none. */
  network: boolean | string[];
}

export interface Sandbox {
  /** Whether commands run inside the OS sandbox. */
  active: boolean;
  /** A folder private to this server, writable by commands (their TMPDIR). */
  tmpdir: string;
  /** Why the sandbox is off, when it is. */
  warning?: string;
  /** Turns a shell command into the command to run with bash -c in the workspace. */
  wrap(command: string, id: string, workspace: string): Promise<string>;
  /** To call after each command. */
  done(): void;
  close(): Promise<void>;
}

const INSTALL_HINT: Record<string, string> = {
  linux: "install them with `apt-get install bubblewrap socat` (Debian/Ubuntu) or your distribution's packages",
  darwin: "sandbox-exec ships with macOS; make sure ripgrep is reachable",
};

/** Sets up the OS sandbox (bubblewrap on Linux, sandbox-exec on macOS) per mode; throws in "os" mode when it can't. */
export async function createSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const tmpdir = await fs.mkdtemp(path.join(os.tmpdir(), "backend-agent-run-"));
  const plain: Sandbox = {
    active: false,
    tmpdir,
    wrap: async (command) => command,
    done: () => undefined,
    close: () => fs.rm(tmpdir, { recursive: true, force: true }),
  };
  if (opts.mode === "off") return { ...plain, warning: "the OS sandbox is off (--sandbox off)" };

  const { SandboxManager } = await import("@anthropic-ai/sandbox-runtime");
  const ripgrep = { command: rgPath };
  const problems = SandboxManager.isSupportedPlatform() ? SandboxManager.checkDependencies(ripgrep).errors : [`platform ${process.platform} is not supported`];
  if (problems.length) {
    const message = `OS sandbox unavailable: ${problems.join(", ")}; ${INSTALL_HINT[process.platform] ?? "it needs Linux or macOS"}.`;
    if (opts.mode === "os") throw new Error(`--sandbox os: ${message}`);
    return { ...plain, warning: `${message} Commands run as plain processes, unconfined.` };
  }

  const network = Array.isArray(opts.network) ? { allowedDomains: opts.network, deniedDomains: [] } : { deniedDomains: [] };
  let ready: Promise<void> | undefined;
  let root: string | undefined;
  const init = (workspace: string) => {
    if (root && root !== workspace) throw new Error(`The sandbox was set up for ${root}, not ${workspace}; restart the server.`);
    root = workspace;
    // The runtime scans the current folder for files that must stay read-only (.git/hooks, .bashrc, …)
    // and puts its temp folder where CLAUDE_CODE_TMPDIR says.
    process.chdir(workspace);
    process.env.CLAUDE_CODE_TMPDIR = tmpdir;
    return (ready ??= SandboxManager.initialize({
      filesystem: { denyRead: [], allowWrite: [workspace, tmpdir], denyWrite: [] },
      network,
      ripgrep,
    } as unknown as Parameters<typeof SandboxManager.initialize>[0]));
  };
  const perCall = opts.network === false ? { network: { allowedDomains: [], deniedDomains: [] } } : undefined;
  return {
    active: true,
    tmpdir,
    wrap: async (command, id, workspace) => {
      await init(workspace);
      return SandboxManager.wrapWithSandbox(command, undefined, perCall, undefined, { commandId: id, commandText: command });
    },
    done: () => SandboxManager.cleanupAfterCommand(),
    close: async () => {
      if (ready) await SandboxManager.reset();
      await plain.close();
    },
  };
}
