import { existsSync, lstatSync, rmdirSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { rgPath } from "@vscode/ripgrep";
import { SharedNetwork, type WorkspaceNetwork } from "./netns.js";

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
  /** [services] The workspace network sandboxed commands share (src/netns.ts), started if needed; undefined when they use the host's. */
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

/** Each live process's pid with the content of /proc/<pid>/<file> (those gone or unreadable left out); [] without /proc. */
export async function readProcFiles(file: "environ" | "status"): Promise<[number, string][]> {
  const pids = (await fs.readdir("/proc").catch(() => [])).filter((e) => /^\d+$/.test(e)).map(Number);
  const read = await Promise.all(
    pids.map(async (pid) => [pid, await fs.readFile(`/proc/${pid}/${file}`, "latin1").catch(() => undefined)] as const),
  );
  return read.filter((entry): entry is [number, string] => entry[1] !== undefined);
}

/** Shell lines capping the processes of the command they precede: the user's current count plus MAX_COMMAND_PROCESSES
 * (RLIMIT_NPROC counts all of the user's processes; it is not enforced for root). Empty without /proc. */
export async function limitProcesses(): Promise<string> {
  const uid = String(process.getuid?.());
  const mine = (await readProcFiles("status")).filter(
    ([, status]) => /^Uid:\s+(\d+)/m.exec(status)?.[1] === uid,
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

/** Sets up the OS sandbox (bubblewrap on Linux, sandbox-exec on macOS) per mode; throws in "os" mode when it can't. */
export async function createSandbox(
  opts: SandboxOptions,
  warn: (message: string) => void = () => undefined,
): Promise<Sandbox> {
  void removeStaleTempFolders().then(
    (n) => n && warn(`removed ${n} temp folders of servers that are no longer running`),
  );
  const tmpdir = await fs.mkdtemp(path.join(os.tmpdir(), `${TMP_PREFIX}${process.pid}-`));
  const plain: Sandbox = {
    active: false,
    tmpdir,
    wrap: async (command) => command,
    done: () => undefined,
    network: async () => undefined,
    close: () => fs.rm(tmpdir, { recursive: true, force: true }),
  };
  if (opts.mode === "off") return { ...plain, warning: "the OS sandbox is off (--sandbox off)" };

  const unavailable = (problems: string[]) =>
    `OS sandbox unavailable: ${problems.join(", ")}; ${INSTALL_HINT[process.platform] ?? "it needs Linux or macOS"}.`;
  const ripgrep = { command: rgPath };
  const loadRuntime = async () => {
    const { SandboxManager } = await import("@anthropic-ai/sandbox-runtime");
    const problems = SandboxManager.isSupportedPlatform()
      ? SandboxManager.checkDependencies(ripgrep).errors
      : [`platform ${process.platform} is not supported`];
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

  const network =
    opts.network === true
      ? { deniedDomains: [] }
      : { allowedDomains: opts.network === false ? [] : opts.network, deniedDomains: [] };
  /**
   * Per command: writes only in its own folder and the temp folder; the workspace's .git stays read-only (run records
   * and checkpoints are in the server's state folder, outside). The runtime's default write paths in the home folder are
   * taken back.
   */
  const filesystem = (workdir: string) => ({
    denyRead: [],
    allowWrite: [workdir, tmpdir],
    denyWrite: [path.join(workdir, ".git"), ...HOME_DEFAULT_WRITES.map((p) => path.join(os.homedir(), p))].filter((p) =>
      existsSync(p),
    ),
  });
  // [services] hook: on Linux every sandboxed command joins the workspace's one network (src/netns.ts).
  const shared = process.platform === "linux" ? new SharedNetwork(opts.network !== true) : undefined;
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
      ready = manager.initialize({ filesystem: filesystem(workdir), network, ripgrep } as unknown as Parameters<
        typeof manager.initialize
      >[0]);
    }
    await ready;
    return manager;
  };
  // bwrap creates mount points for the files it keeps read-only; the runtime removes them after its last command but
  // leaves their folder (.claude) when commands overlap. Removed here once no command runs, unless it was there before.
  const mountFolders = new Map<string, boolean>();
  let running = 0;
  const removeMountFolders = () => {
    for (const [dir, existed] of mountFolders) {
      if (existed) continue;
      try {
        rmdirSync(dir); // only an empty folder; never follows a link
      } catch {
        // absent, not empty, or not a folder: not ours to remove
      }
    }
  };
  const sandbox: Sandbox = {
    active: true,
    tmpdir,
    wrap: async (command, id, workdir) => {
      running++;
      const dir = path.join(workdir, ".claude");
      if (!mountFolders.has(dir)) mountFolders.set(dir, lstatSync(dir, { throwIfNoEntry: false }) !== undefined);
      const m = await start(workdir);
      const perCall = { filesystem: filesystem(workdir) } as unknown as Parameters<
        NonNullable<typeof m>["wrapWithSandbox"]
      >[2];
      if (!m) return command;
      const wrapped = await m.wrapWithSandbox(command, undefined, perCall, undefined, {
        commandId: id,
        commandText: command,
      });
      return shared ? shared.join(wrapped) : wrapped;
    },
    done: () => {
      manager?.cleanupAfterCommand();
      if (--running === 0) removeMountFolders();
    },
    network: async (workdir) => {
      if (!shared?.isolated) return undefined;
      // A command line the runtime builds tells which proxy sockets the network's relays connect to.
      if (!shared.started) await sandbox.wrap("true", "network-probe", workdir).finally(() => sandbox.done());
      return sandbox.active ? shared.ready() : undefined;
    },
    close: async () => {
      await shared?.close();
      if (ready) await manager?.reset();
      await plain.close();
    },
  };
  return sandbox;
}
