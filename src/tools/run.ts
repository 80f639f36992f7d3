import { randomUUID } from "node:crypto";
import stripAnsi from "strip-ansi";
import { z } from "zod";
import type { Sandbox } from "../sandbox.js";
import { killTree } from "../proctree.js";
import { Semaphore } from "../semaphore.js";
import { defineTool, type Tool, type ToolContext, type ToolOutput } from "../tool.js";
import { ToolError } from "../workspace.js";

const MAX_OUTPUT_CHARS = 30_000;
const KEEP_BYTES = 64 * 1024;
const MAX_COMMAND_CHARS = 100_000;
const KILL_GRACE_MS = 500;
const HEARTBEAT_MS = 5_000;

/** Variables a command may see by default; anything else must be named with --allow-env. */
const ENV_ALLOWLIST = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "NODE_ENV", "CI", "NVM_DIR", "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "JAVA_HOME", "GOPATH", "GOROOT", "CARGO_HOME", "RUSTUP_HOME", "PYENV_ROOT", "VIRTUAL_ENV"];
const SECRET_NAME = /(_KEY$|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)/i;

export interface RunConfig {
  sandbox: Sandbox;
  /** Exact variable names the user allowed in addition to the allowlist. */
  allowEnv: string[];
  maxConcurrent: number;
  /** [services/background] Variables of the workspace's services (DATABASE_URL, …), started on first use. */
  serviceEnv?: (root: string) => Promise<Record<string, string>>;
  /** [services/background] Starts `run_in_background` commands; absent: the option is refused. */
  background?: { start(command: string, description: string | undefined, ctx: ToolContext): Promise<ToolOutput> };
}

/** The command's environment: allowlisted names (never secret-looking unless named exactly), plus non-interactive defaults. */
export function commandEnv(source: NodeJS.ProcessEnv, allowEnv: string[], tmpdir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const allowed = allowEnv.includes(name) || ((ENV_ALLOWLIST.includes(name) || name.startsWith("LC_")) && !SECRET_NAME.test(name));
    if (allowed) env[name] = value;
  }
  return { ...env, TMPDIR: tmpdir, GIT_TERMINAL_PROMPT: "0", PAGER: "cat", GIT_PAGER: "cat", NO_COLOR: "1", FORCE_COLOR: "0" };
}

/** Keeps the first and last KEEP_BYTES of a stream, however long it gets. */
export class BoundedOutput {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private latest: Buffer = Buffer.alloc(0);
  total = 0;

  /** The last non-blank line printed so far, for progress messages. */
  lastLine(): string {
    const line = this.latest.subarray(-512).toString("utf8").split(/\r?\n|\r/).filter((l) => l.trim()).at(-1) ?? "";
    return stripAnsi(line).slice(0, 200);
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    this.latest = chunk;
    if (this.headBytes < KEEP_BYTES) {
      const take = chunk.subarray(0, KEEP_BYTES - this.headBytes);
      this.head.push(take);
      this.headBytes += take.length;
      chunk = chunk.subarray(take.length);
    }
    if (!chunk.length) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    if (this.tailBytes > 2 * KEEP_BYTES) {
      const joined = Buffer.concat(this.tail);
      this.tail = [joined.subarray(joined.length - KEEP_BYTES)];
      this.tailBytes = KEEP_BYTES;
    }
  }

  /** Clean text of at most MAX_OUTPUT_CHARS: head and tail, with a marker saying what was left out. */
  render(): { output: string; omitted: number } {
    const clean = (b: Buffer) => stripAnsi(b.toString("utf8")).replace(/\r\n/g, "\n").replace(/^.*\r(?!$)/gm, "");
    const tail = Buffer.concat(this.tail);
    const droppedBytes = this.total - this.headBytes - tail.length;
    const head = clean(Buffer.concat(this.head));
    const tailText = clean(tail);
    if (droppedBytes === 0 && head.length + tailText.length <= MAX_OUTPUT_CHARS) return { output: head + tailText, omitted: 0 };
    const half = MAX_OUTPUT_CHARS / 2 - 100;
    const omitted = Math.max(0, head.length - half) + droppedBytes + Math.max(0, tailText.length - half);
    return { output: `${head.slice(0, half)}\n\n[… ${omitted} characters of output left out …]\n\n${tailText.slice(-half)}`, omitted };
  }
}

const liveGroups = new Set<number>();
process.on("exit", () => liveGroups.forEach((pgid) => killGroup(pgid, "SIGKILL")));

export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

const input = z.object({
  command: z.string().min(1, "command is empty: give a shell command to run").max(MAX_COMMAND_CHARS, `command is over ${MAX_COMMAND_CHARS} characters; put long scripts in a file and run that`).describe("The shell command to run"),
  timeout: z.number().int().min(1).max(600_000).default(120_000).describe("Milliseconds before the command is killed (default 120000, at most 600000)"),
  description: z.string().optional().describe("A short description of what the command does (5-10 words)"),
  run_in_background: z.boolean().default(false).describe("Start the command and return at once with a run_id; read its output with TaskOutput, stop it with TaskStop"),
});

const output = z.object({
  output: z.string().describe("Combined stdout and stderr, ANSI codes stripped, at most 30,000 characters"),
  exit_code: z.number().nullable(),
  signal: z.string().nullable(),
  timed_out: z.boolean(),
  cancelled: z.boolean(),
  duration_ms: z.number(),
  omitted_chars: z.number().describe("Characters of output left out in the middle"),
  sandboxed: z.boolean(),
  run_id: z.string().optional().describe("With run_in_background: the id to pass to TaskOutput and TaskStop"),
});
export type RunResult = z.infer<typeof output>;

export function createRunTool(config: RunConfig): Tool {
  const slots = new Semaphore(config.maxConcurrent);
  return defineTool({
    name: "Run",
    title: "Run shell command",
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    input,
    output,
    async handle({ command, timeout, description, run_in_background }, ctx) {
      if (!command.trim()) throw new ToolError("command is blank: give a shell command to run.");
      // [services/background] hook: background commands live in src/background.ts.
      if (run_in_background) {
        if (!config.background) throw new ToolError("run_in_background is not available here; run the command in the foreground.");
        return config.background.start(command, description, ctx);
      }
      const serviceEnv = (await config.serviceEnv?.(ctx.ws.root)) ?? {};
      const release = await slots.acquire(ctx.signal).catch(() => {
        throw new ToolError("Cancelled while waiting for a free command slot; nothing ran.");
      });
      try {
        const started = Date.now();
        const wrapped = await config.sandbox.wrap(`exec 2>&1\n${command}`, randomUUID(), ctx.ws.root);
        if (ctx.signal.aborted) throw new ToolError("Cancelled before the command started; nothing ran.");
        const { execa } = await import("execa");
        const child = execa("bash", ["-c", wrapped], {
          cwd: ctx.ws.root,
          env: { ...commandEnv(process.env, config.allowEnv, config.sandbox.tmpdir), ...serviceEnv },
          extendEnv: false,
          detached: true,
          stdin: "ignore",
          stderr: "inherit",
          buffer: false,
          reject: false,
        });
        const pgid = child.pid!;
        liveGroups.add(pgid);
        const out = new BoundedOutput();
        // Every chunk updates the progress line; the server's progress reporter throttles, keeping the latest.
        child.stdout!.on("data", (chunk: Buffer) => {
          out.push(chunk);
          ctx.progress(out.lastLine());
        });
        let stopReason: "timeout" | "cancel" | undefined;
        const stop = (reason: "timeout" | "cancel") => {
          stopReason ??= reason;
          // [background] hook: the whole tree, bubblewrap's own session included (src/proctree.ts).
          void killTree(pgid, KILL_GRACE_MS);
        };
        const timer = setTimeout(() => stop("timeout"), timeout);
        const onAbort = () => stop("cancel");
        ctx.signal.addEventListener("abort", onAbort);
        const heartbeat = setInterval(() => ctx.progress(`running ${Math.round((Date.now() - started) / 1000)}s · ${out.lastLine()}`), HEARTBEAT_MS);
        // When bash exits, whatever it left running in its group (background jobs) ends too.
        child.on("exit", () => {
          killGroup(pgid, "SIGTERM");
          setTimeout(() => killGroup(pgid, "SIGKILL"), KILL_GRACE_MS).unref();
        });
        const { exitCode, signal } = await child;
        clearTimeout(timer);
        clearInterval(heartbeat);
        ctx.signal.removeEventListener("abort", onAbort);
        killGroup(pgid, "SIGKILL");
        liveGroups.delete(pgid);
        const { output, omitted } = out.render();
        const result: RunResult = {
          output,
          exit_code: exitCode ?? null,
          signal: signal ?? null,
          timed_out: stopReason === "timeout",
          cancelled: stopReason === "cancel",
          duration_ms: Date.now() - started,
          omitted_chars: omitted,
          sandboxed: config.sandbox.active,
        };
        return { text: renderRun(result, timeout), structured: result };
      } finally {
        config.sandbox.done();
        release();
      }
    },
  });
}

export function renderRun(r: RunResult, timeout: number): string {
  const status = r.timed_out
    ? `Timed out after ${timeout} ms; the command and its child processes were killed.`
    : r.cancelled
      ? "Cancelled; the command and its child processes were killed."
      : r.signal
        ? `Killed by ${r.signal}.`
        : `Exit code ${r.exit_code}.`;
  return `${r.output || "(no output)"}\n\n[${status} ${r.duration_ms} ms${r.sandboxed ? ", sandboxed" : ""}]`;
}
