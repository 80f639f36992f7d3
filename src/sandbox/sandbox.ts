import { existsSync, lstatSync, rmdirSync, statSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ripgrepPath } from "../files/ripgrep.js";
import { SharedNetwork, type WorkspaceNetwork } from "./netns.js";
import { otherPids } from "./proctree.js";

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
  /** The program and arguments that run a shell command with bash in the workspace (sandboxed when active). */
  wrap(command: string, id: string, workspace: string): Promise<string[]>;
  /** To call after each command. */
  done(): void;
  /** The workspace network sandboxed commands share (src/netns.ts), started if needed; undefined when they use the host's. */
  network(workspace: string): Promise<WorkspaceNetwork | undefined>;
  close(): Promise<void>;
}

/** The OS temp folder holds one folder per server: this prefix, the server's pid, a random suffix. */
const TMP_PREFIX = "backend-agent-run-";
/** Folders in the home folder the sandbox runtime makes writable by default; the server keeps them read-only. */
const HOME_DEFAULT_WRITES = [".npm/_logs", ".claude/debug"];
/** Processes one command may have beyond those its user already runs (RLIMIT_NPROC counts them all). */
const MAX_COMMAND_PROCESSES = 4096;

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Removes the temp folders of servers whose pid is no longer alive (only real folders of ours, never through a link). */
export async function removeStaleTempFolders(tmp = os.tmpdir()): Promise<number> {
  let removed = 0;
  for (const name of await fs.readdir(tmp).catch(() => [])) {
    const pid = Number(new RegExp(`^${TMP_PREFIX}(\\d+)-[^/]+$`).exec(name)?.[1]);
    if (!pid || pid === process.pid || pidAlive(pid)) continue;
    const abs = path.join(tmp, name);
    const st = await fs.lstat(abs).catch(() => undefined);
    if (!st?.isDirectory() || st.uid !== process.getuid?.()) continue;
    await fs.rm(abs, { recursive: true, force: true }).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}

/** Shell lines capping the processes of the command they precede: the user's current count plus MAX_COMMAND_PROCESSES
 * (RLIMIT_NPROC counts all of the user's processes). Empty for root, for whom the kernel does not enforce it, and
 * without /proc. */
export function limitProcesses(): string {
  const uid = process.getuid?.();
  if (uid === undefined || uid === 0) return "";
  // /proc/<pid> belongs to the process's user: one stat instead of reading its status file.
  const mine = [process.pid, ...otherPids()].filter(
    (pid) => statSync(`/proc/${pid}`, { throwIfNoEntry: false })?.uid === uid,
  ).length;
  return mine ? `ulimit -u ${mine + MAX_COMMAND_PROCESSES} 2>/dev/null\n` : "";
}

const INSTALL_HINT: Record<string, string> = {
  linux:
    "install them with `apt-get install bubblewrap socat util-linux` (Debian/Ubuntu) or your distribution's packages",
  darwin: "sandbox-exec ships with macOS; make sure ripgrep is reachable",
};

// nsenter (util-linux) joins each command to the workspace network (src/netns.ts).
const REQUIRED: Record<string, string[]> = { linux: ["bwrap", "socat", "nsenter"], darwin: ["sandbox-exec"] };
const onPath = (cmd: string) =>
  (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, cmd)));

/** Cheap start-up check (no import of the runtime): which required programs are missing. */
function missingPrograms(): string[] {
  const required = REQUIRED[process.platform];
  if (!required) return [`platform ${process.platform} is not supported`];
  return required.filter((cmd) => !onPath(cmd)).map((cmd) => `${cmd} not found`);
}

type Runtime = Awaited<ReturnType<typeof loadRuntime>>;

/** The sandbox runtime, loaded on first use, and what it finds missing. */
async function loadRuntime() {
  const { SandboxManager } = await import("@anthropic-ai/sandbox-runtime");
  const ripgrep = { command: await ripgrepPath() };
  const problems = SandboxManager.isSupportedPlatform()
    ? SandboxManager.checkDependencies(ripgrep).errors
    : [`platform ${process.platform} is not supported`];
  return { SandboxManager, problems, ripgrep };
}

const unavailable = (problems: string[]) =>
  `OS sandbox unavailable: ${problems.join(", ")}; ${INSTALL_HINT[process.platform] ?? "it needs Linux or macOS"}.`;

/** Commands as plain processes (--sandbox off, or no sandbox to be had): only the private temp folder. */
function plainSandbox(tmpdir: string, warning: string): Sandbox {
  return {
    active: false,
    tmpdir,
    warning,
    wrap: async (command) => ["bash", "-c", command],
    done: () => undefined,
    network: async () => undefined,
    close: () => fs.rm(tmpdir, { recursive: true, force: true }),
  };
}

/** Starts removing the temp folders of servers that are no longer running (a start-up chore), warning how many went. */
export function sweepStaleTempFolders(warn: (message: string) => void): void {
  void removeStaleTempFolders().then(
    (n) => n && warn(`removed ${n} temp folders of servers that are no longer running`),
  );
}

/** Sets up the OS sandbox (bubblewrap on Linux, sandbox-exec on macOS) per mode; throws in "os" mode when it can't. */
export async function createSandbox(
  opts: SandboxOptions,
  warn: (message: string) => void = () => undefined,
): Promise<Sandbox> {
  const tmpdir = await fs.mkdtemp(path.join(os.tmpdir(), `${TMP_PREFIX}${process.pid}-`));
  if (opts.mode === "off") return plainSandbox(tmpdir, "the OS sandbox is off (--sandbox off)");
  const early = missingPrograms();
  // "os" is a promise to the user: check everything now. "auto" only looks for the programs, so start-up stays fast.
  const eager = opts.mode === "os" && !early.length ? await loadRuntime() : undefined;
  const problems = early.length ? early : (eager?.problems ?? []);
  if (problems.length) {
    if (opts.mode === "os") throw new Error(`--sandbox os: ${unavailable(problems)}`);
    return plainSandbox(tmpdir, `${unavailable(problems)} Commands run as plain processes, unconfined.`);
  }
  return new OsSandbox(tmpdir, opts, warn, eager);
}

/** Commands in bubblewrap (sandbox-exec on macOS) through the sandbox runtime, set up on the first command. */
class OsSandbox implements Sandbox {
  active = true;
  private runtime: Promise<Runtime> | undefined;
  private manager: Runtime["SandboxManager"] | undefined;
  private ready: Promise<void> | undefined;
  private readonly access: SandboxOptions["network"];
  // On Linux every sandboxed command joins the workspace's one network (netns.ts).
  private readonly shared: SharedNetwork | undefined;
  // bwrap creates mount points for the files it keeps read-only; the runtime removes them after its last command but
  // leaves their folder (.claude) when commands overlap. Removed once no command runs, unless it was there before.
  private readonly mountFolders = new Map<string, boolean>();
  private running = 0;

  constructor(
    readonly tmpdir: string,
    opts: SandboxOptions,
    private readonly warn: (message: string) => void,
    eager: Runtime | undefined,
  ) {
    this.access = opts.network;
    this.runtime = eager && Promise.resolve(eager);
    this.shared = process.platform === "linux" ? new SharedNetwork(opts.network !== true) : undefined;
  }

  /**
   * Per command: writes only in its own folder and the temp folder; the workspace's .git stays read-only (run records
   * and checkpoints are in the server's state folder, outside). The runtime's default write paths in the home folder
   * are taken back.
   */
  private filesystem(workdir: string) {
    const denied = [path.join(workdir, ".git"), ...HOME_DEFAULT_WRITES.map((p) => path.join(os.homedir(), p))];
    return { denyRead: [], allowWrite: [workdir, this.tmpdir], denyWrite: denied.filter((p) => existsSync(p)) };
  }

  private networkRules() {
    const n = this.access;
    return n === true ? { deniedDomains: [] } : { allowedDomains: n === false ? [] : n, deniedDomains: [] };
  }

  /** The runtime, initialised once; undefined (and the sandbox off, with a warning) when it is missing parts. */
  private async start(workdir: string): Promise<Runtime["SandboxManager"] | undefined> {
    const loaded = await (this.runtime ??= loadRuntime());
    if (loaded.problems.length) {
      if (this.active) this.warn(`${unavailable(loaded.problems)} Commands now run as plain processes, unconfined.`);
      this.active = false;
      return undefined;
    }
    if (!this.ready) {
      // The runtime scans the current folder for files that must stay read-only (.bashrc, .git/hooks, …)
      // and puts its temp folder where CLAUDE_CODE_TMPDIR says.
      process.chdir(workdir);
      process.env.CLAUDE_CODE_TMPDIR = this.tmpdir;
      this.manager = loaded.SandboxManager;
      const config = { filesystem: this.filesystem(workdir), network: this.networkRules(), ripgrep: loaded.ripgrep };
      this.ready = this.manager.initialize(config as unknown as Parameters<Runtime["SandboxManager"]["initialize"]>[0]);
    }
    await this.ready;
    return this.manager;
  }

  async wrap(command: string, id: string, workdir: string): Promise<string[]> {
    this.running++;
    const dir = path.join(workdir, ".claude");
    if (!this.mountFolders.has(dir))
      this.mountFolders.set(dir, lstatSync(dir, { throwIfNoEntry: false }) !== undefined);
    const m = await this.start(workdir);
    if (!m) return ["bash", "-c", command];
    const perCall = { filesystem: this.filesystem(workdir) } as unknown as Parameters<typeof m.wrapWithSandbox>[2];
    const wrapped = await m.wrapWithSandbox(command, undefined, perCall, undefined, {
      commandId: id,
      commandText: command,
    });
    // On Linux the runtime's line is run as words (no shell around it); sandbox-exec's line keeps its shell.
    return this.shared ? this.shared.join(wrapped) : ["bash", "-c", wrapped];
  }

  done(): void {
    this.manager?.cleanupAfterCommand();
    if (--this.running === 0) this.removeMountFolders();
  }

  private removeMountFolders(): void {
    for (const [dir, existed] of this.mountFolders) {
      if (existed) continue;
      try {
        rmdirSync(dir); // only an empty folder; never follows a link
      } catch {
        // absent, not empty, or not a folder: not ours to remove
      }
    }
  }

  async network(workdir: string): Promise<WorkspaceNetwork | undefined> {
    const shared = this.shared;
    if (!shared?.isolated) return undefined;
    // A command line the runtime builds tells which proxy sockets the network's relays connect to.
    if (!shared.started) await this.wrap("true", "network-probe", workdir).finally(() => this.done());
    return this.active ? shared.ready() : undefined;
  }

  async close(): Promise<void> {
    await this.shared?.close();
    if (this.ready) await this.manager?.reset();
    await fs.rm(this.tmpdir, { recursive: true, force: true });
  }
}
