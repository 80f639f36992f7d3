import { existsSync } from "node:fs";
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

const REQUIRED: Record<string, string[]> = { linux: ["bwrap", "socat"], darwin: ["sandbox-exec"] };
const onPath = (cmd: string) => (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, cmd)));

/** Cheap start-up check (no import of the runtime): which required programs are missing. */
function missingPrograms(): string[] {
  const required = REQUIRED[process.platform];
  if (!required) return [`platform ${process.platform} is not supported`];
  return required.filter((cmd) => !onPath(cmd)).map((cmd) => `${cmd} not found`);
}

/** Sets up the OS sandbox (bubblewrap on Linux, sandbox-exec on macOS) per mode; throws in "os" mode when it can't. */
export async function createSandbox(opts: SandboxOptions, warn: (message: string) => void = () => undefined): Promise<Sandbox> {
  const tmpdir = await fs.mkdtemp(path.join(os.tmpdir(), "backend-agent-run-"));
  const plain: Sandbox = {
    active: false,
    tmpdir,
    wrap: async (command) => command,
    done: () => undefined,
    close: () => fs.rm(tmpdir, { recursive: true, force: true }),
  };
  if (opts.mode === "off") return { ...plain, warning: "the OS sandbox is off (--sandbox off)" };

  const unavailable = (problems: string[]) => `OS sandbox unavailable: ${problems.join(", ")}; ${INSTALL_HINT[process.platform] ?? "it needs Linux or macOS"}.`;
  const ripgrep = { command: rgPath };
  const loadRuntime = async () => {
    const { SandboxManager } = await import("@anthropic-ai/sandbox-runtime");
    const problems = SandboxManager.isSupportedPlatform() ? SandboxManager.checkDependencies(ripgrep).errors : [`platform ${process.platform} is not supported`];
    return { SandboxManager, problems };
  };
  const early = missingPrograms();
  // "os" is a promise to the user: check everything now. "auto" only looks for the programs, so start-up stays fast.
  const eager = opts.mode === "os" && !early.length ? await loadRuntime() : undefined;
  const problems = early.length ? early : (eager?.problems ?? []);
  if (problems.length) {
    if (opts.mode === "os") throw new Error(`--sandbox os: ${unavailable(problems)}`);
    return { ...plain, warning: `${unavailable(problems)} Commands run as plain processes, unconfined.` };
  }
  let runtime: Promise<Awaited<ReturnType<typeof loadRuntime>>> | undefined = eager && Promise.resolve(eager);

  const network = opts.network === true ? { deniedDomains: [] } : { allowedDomains: opts.network === false ? [] : opts.network, deniedDomains: [] };
  /** Per command: writes only in its own folder and the temp folder; the workspace's .git stays read-only. (Run records and checkpoints are in the server's state folder, outside.) */
  const filesystem = (workdir: string) => ({
    denyRead: [],
    allowWrite: [workdir, tmpdir],
    denyWrite: [path.join(workdir, ".git")].filter((p) => existsSync(p)),
  });
  let manager: Awaited<ReturnType<typeof loadRuntime>>["SandboxManager"] | undefined;
  let ready: Promise<void> | undefined;
  const start = async (workdir: string) => {
    const loaded = await (runtime ??= loadRuntime());
    if (loaded.problems.length) {
      if (sandbox.active) warn(`${unavailable(loaded.problems)} Commands now run as plain processes, unconfined.`);
      sandbox.active = false;
      return undefined;
    }
    if (!ready) {
      // The runtime scans the current folder for files that must stay read-only (.bashrc, .git/hooks, …)
      // and puts its temp folder where CLAUDE_CODE_TMPDIR says.
      process.chdir(workdir);
      process.env.CLAUDE_CODE_TMPDIR = tmpdir;
      manager = loaded.SandboxManager;
      ready = manager.initialize({ filesystem: filesystem(workdir), network, ripgrep } as unknown as Parameters<typeof manager.initialize>[0]);
    }
    await ready;
    return manager;
  };
  const sandbox: Sandbox = {
    active: true,
    tmpdir,
    wrap: async (command, id, workdir) => {
      const m = await start(workdir);
      const perCall = { filesystem: filesystem(workdir) } as unknown as Parameters<NonNullable<typeof m>["wrapWithSandbox"]>[2];
      return m ? m.wrapWithSandbox(command, undefined, perCall, undefined, { commandId: id, commandText: command }) : command;
    },
    done: () => manager?.cleanupAfterCommand(),
    close: async () => {
      if (ready) await manager?.reset();
      await plain.close();
    },
  };
  return sandbox;
}
