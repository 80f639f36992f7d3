// Running one shell command: in the OS sandbox, with an allowlisted environment, bounded output, a timeout, and a
// kill that leaves nothing behind. The Run tool and background commands build on it.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { BoundedOutput } from "./output.js";
import { otherPids } from "./proctree.js";
import { limitProcesses, type Sandbox } from "./sandbox.js";

export const KILL_GRACE_MS = 500;
const HEARTBEAT_MS = 5_000;
const MAX_SWEEPS = 100;

/** Variables a command may see by default; anything else must be named with --allow-env. */
const ENV_ALLOWLIST = [
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "SHELL",
  "LANG",
  "LANGUAGE",
  "TERM",
  "TZ",
  "NODE_ENV",
  "CI",
  "NVM_DIR",
  "NODE_OPTIONS",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "JAVA_HOME",
  "GOPATH",
  "GOROOT",
  "CARGO_HOME",
  "RUSTUP_HOME",
  "PYENV_ROOT",
  "VIRTUAL_ENV",
];
const SECRET_NAME = /(_KEY$|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)/i;

/** Where and how commands run. */
export interface CommandConfig {
  sandbox: Sandbox;
  /** Exact variable names the user allowed in addition to the allowlist. */
  allowEnv: string[];
  /** Variables of the workspace's services (DATABASE_URL, …), started on first use. */
  serviceEnv?: (root: string) => Promise<Record<string, string>>;
}

/** What a command's run needs from its caller: where, a cancel signal, and where progress goes. */
export interface CommandContext {
  ws: { root: string };
  signal: AbortSignal;
  progress(message: string): void;
}

/** The command's environment: allowlisted names (never secret-looking unless named exactly), plus non-interactive defaults. */
export function commandEnv(source: NodeJS.ProcessEnv, allowEnv: string[], tmpdir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const allowed =
      allowEnv.includes(name) || ((ENV_ALLOWLIST.includes(name) || name.startsWith("LC_")) && !SECRET_NAME.test(name));
    if (allowed) env[name] = value;
  }
  // npm's logs go to the private temp folder: $HOME/.npm/_logs is read-only in the sandbox.
  return {
    ...env,
    TMPDIR: tmpdir,
    npm_config_logs_dir: path.join(tmpdir, "npm-logs"),
    GIT_TERMINAL_PROMPT: "0",
    PAGER: "cat",
    GIT_PAGER: "cat",
    NO_COLOR: "1",
    FORCE_COLOR: "0",
  };
}

/** Each command's processes carry TOKEN_VAR=<its token> in their environment (bwrap passes it on), so they can be found. */
const TOKEN_VAR = "BACKEND_AGENT_COMMAND";
/** Live commands: token → process group. */
const liveCommands = new Map<string, number>();
process.on("exit", () => liveCommands.forEach((pgid, token) => stopAll(token, pgid)));

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
export const killGroup = (pgid: number, signal: NodeJS.Signals) => kill(-pgid, signal);

/**
 * Processes (other than the server) whose environment carries the token; [] without /proc. Synchronous on purpose:
 * a sweep is one small read per process, far cheaper than as many trips through the thread pool, and it must also
 * work in an exit handler.
 */
function processesCarrying(token: string): number[] {
  const mark = `${TOKEN_VAR}=${token}`;
  return otherPids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(mark);
    } catch {
      return false; // gone, or not ours to read
    }
  });
}

/**
 * SIGKILLs the command's process group and every process carrying its token, round after round until none is left
 * (a process may fork between rounds). The group alone is not enough: bubblewrap's inner process starts a new session,
 * and a cancel during start-up can reach the outer bwrap before the inner one (the sandbox's pid 1) has armed its
 * die-with-parent signal, orphaning the sandbox. Killing that pid 1 ends everything inside the sandbox.
 */
export function stopAll(token: string, pgid: number): void {
  killGroup(pgid, "SIGKILL");
  for (let round = 0; round < MAX_SWEEPS; round++) {
    const pids = processesCarrying(token);
    if (!pids.length) return;
    for (const pid of pids) kill(pid, "SIGKILL");
  }
}

/** The result of one command: the Run tool's structured output. */
export const commandResultSchema = z.object({
  output: z.string().describe("Combined stdout and stderr, ANSI codes stripped, at most 30,000 characters"),
  exit_code: z.number().nullable(),
  signal: z.string().nullable(),
  timed_out: z.boolean(),
  cancelled: z.boolean(),
  duration_ms: z.number(),
  omitted_chars: z.number().describe("Characters of output left out in the middle"),
  sandboxed: z.boolean(),
});
export type CommandResult = z.infer<typeof commandResultSchema>;

/**
 * Starts a command (the words Sandbox.wrap made) in its own process group, stdout piped (stderr is folded into it by
 * the script), stdin closed. The process comes wrapped: it is a promise of its end, which an async return would wait for.
 */
export async function spawnCommand([file, ...args]: string[], cwd: string, env: Record<string, string>) {
  const { execa } = await import("execa");
  const child = execa(file!, args, {
    cwd,
    env,
    extendEnv: false,
    detached: true,
    stdin: "ignore",
    stderr: "inherit",
    buffer: false,
    reject: false,
  });
  return { child };
}

/** Runs command with bash -c in the workspace (sandboxed when the sandbox is on) until it ends, times out or is cancelled. */
export async function runCommand(
  config: CommandConfig,
  command: string,
  timeout: number,
  ctx: CommandContext,
): Promise<CommandResult> {
  const serviceEnv = (await config.serviceEnv?.(ctx.ws.root)) ?? {};
  const started = Date.now();
  const token = randomUUID();
  const wrapped = await config.sandbox.wrap(`${limitProcesses()}exec 2>&1\n${command}`, token, ctx.ws.root);
  if (ctx.signal.aborted) throw new CommandNotStarted();
  const env = { ...commandEnv(process.env, config.allowEnv, config.sandbox.tmpdir), ...serviceEnv, [TOKEN_VAR]: token };
  const { child } = await spawnCommand(wrapped, ctx.ws.root, env);
  const pgid = child.pid!;
  liveCommands.set(token, pgid);
  const out = new BoundedOutput();
  // Every chunk updates the progress line; the server's progress reporter throttles, keeping the latest.
  child.stdout!.on("data", (chunk: Buffer) => {
    out.push(chunk);
    ctx.progress(out.lastLine());
  });
  let stopReason: "timeout" | "cancel" | undefined;
  // SIGTERM to the group first, so tools can clean up; then everything the command started is killed.
  const sweeps = new Set<NodeJS.Timeout>();
  const terminate = () => {
    killGroup(pgid, "SIGTERM");
    sweeps.add(setTimeout(() => stopAll(token, pgid), KILL_GRACE_MS).unref());
  };
  const stop = (reason: "timeout" | "cancel") => {
    stopReason ??= reason;
    terminate();
  };
  const timer = setTimeout(() => stop("timeout"), timeout);
  const onAbort = () => stop("cancel");
  ctx.signal.addEventListener("abort", onAbort);
  if (ctx.signal.aborted) stop("cancel");
  const heartbeat = setInterval(
    () => ctx.progress(`running ${Math.round((Date.now() - started) / 1000)}s · ${out.lastLine()}`),
    HEARTBEAT_MS,
  );
  // When bash exits, whatever it left running (background jobs) ends too.
  child.on("exit", terminate);
  const { exitCode, signal } = await child;
  clearTimeout(timer);
  clearInterval(heartbeat);
  ctx.signal.removeEventListener("abort", onAbort);
  // The output has ended: nothing is left to wait for, so the last sweep comes now instead of after the grace.
  sweeps.forEach(clearTimeout);
  // Also after a sandboxed command that ended by itself: bwrap reports the command's exit before the sandbox's pid 1
  // is gone, so what it left running may live on for a moment; the sweep returns once it is gone.
  stopAll(token, pgid);
  liveCommands.delete(token);
  const { output, omitted } = out.render();
  const result: CommandResult = {
    output,
    exit_code: exitCode ?? null,
    signal: signal ?? null,
    timed_out: stopReason === "timeout",
    cancelled: stopReason === "cancel",
    duration_ms: Date.now() - started,
    omitted_chars: omitted,
    sandboxed: config.sandbox.active,
  };
  return result;
}

/** The command was cancelled before it started: nothing ran. */
export class CommandNotStarted extends Error {
  constructor() {
    super("Cancelled before the command started; nothing ran.");
  }
}
