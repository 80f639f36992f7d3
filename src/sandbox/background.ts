// Background commands: `Run {run_in_background: true}` starts a sandboxed command that outlives the call; TaskOutput reads
// what it printed since the last read, TaskStop ends its whole process tree. Ids share the run_id namespace of Task runs.
import { randomBytes } from "node:crypto";
import { processesWithToken, processTree, signalAll, waitGone } from "./proctree.js";
import type { Sandbox } from "./sandbox.js";
import type { ToolContext, ToolOutput } from "../server/tool.js";
import { commandEnv, KILL_GRACE_MS, killGroup, spawnCommand } from "./command.js";
import { BoundedOutput } from "./output.js";
import { type BackgroundSummary, type BackgroundView, describe, present, startedOutput } from "./background-view.js";
import { ToolError } from "../server/errors.js";

export const BACKGROUND_PREFIX = "bg-";
export const isBackgroundId = (id: string) => id.startsWith(BACKGROUND_PREFIX);

/** How long TaskStop waits for the process tree to go after SIGKILL before it reports failure. */
const STOP_WAIT_MS = 5_000;
/** Ended commands kept in memory so their last output and exit code can still be read. */
const KEEP_ENDED = 50;

export interface BackgroundConfig {
  sandbox: Sandbox;
  allowEnv: string[];
  /** Background commands alive at once. */
  maxCount: number;
  /** A command still running after this long is stopped. */
  maxLifetimeMs: number;
  /** Variables of the workspace's services (DATABASE_URL, …). */
  serviceEnv?: (root: string) => Promise<Record<string, string>>;
}

type StopReason = "TaskStop" | "lifetime" | "task ended" | "server exit";

interface Command {
  id: string;
  command: string;
  description?: string;
  startedAt: Date;
  pgid: number;
  /** Output not yet returned by TaskOutput. */
  unread: BoundedOutput;
  total: number;
  exit?: { code: number | null; signal: string | null; at: number };
  stopReason?: StopReason;
  ended: Promise<void>;
  /** Woken on new output and at the end. */
  wake: Set<() => void>;
  lifetime: NodeJS.Timeout;
  /** The Task run that started it (its abort signal), if any. */
  owner?: AbortSignal;
}

export class BackgroundCommands {
  private readonly commands = new Map<string, Command>();
  private readonly taskRuns = new Set<AbortSignal>();
  private closing = false;
  /** Starts under way, counted against the limit before they are registered. */
  private starting = 0;

  constructor(private readonly config: BackgroundConfig) {}

  /** Marks a Task run (by its abort signal): commands it starts are stopped when done settles. */
  adoptTaskRun(signal: AbortSignal, done: Promise<unknown>): void {
    this.taskRuns.add(signal);
    const end = () => {
      this.taskRuns.delete(signal);
      void this.stopWhere((c) => c.owner === signal, "task ended");
    };
    done.then(end, end);
  }

  private get running(): Command[] {
    return [...this.commands.values()].filter((c) => !c.exit);
  }

  async start(command: string, description: string | undefined, ctx: ToolContext): Promise<ToolOutput> {
    if (this.closing) throw new ToolError("The server is shutting down; no background command was started.");
    if (this.running.length + this.starting >= this.config.maxCount) {
      const list = this.running.map((c) => `${c.id} (${c.command.slice(0, 60)})`).join(", ");
      throw new ToolError(
        `${this.config.maxCount} background commands are already running (the limit, --max-background): ${list}. Stop one with TaskStop {run_id}, then start this one again.`,
      );
    }
    this.starting++;
    try {
      return await this.launch(command, description, ctx);
    } finally {
      this.starting--;
    }
  }

  private async launch(command: string, description: string | undefined, ctx: ToolContext): Promise<ToolOutput> {
    const id = `${BACKGROUND_PREFIX}${randomBytes(4).toString("hex")}`;
    const root = ctx.ws.root;
    const env = {
      ...commandEnv(process.env, this.config.allowEnv, this.config.sandbox.tmpdir),
      ...((await this.config.serviceEnv?.(root)) ?? {}),
    };
    // The id in a comment marks every process of the command, for the sweep in stop().
    const wrapped = await this.config.sandbox
      .wrap(`exec 2>&1 # ${tokenOf(id)}\n${command}`, id, root)
      .catch((e: Error) => {
        this.config.sandbox.done();
        throw e;
      });
    const { child } = await spawnCommand(wrapped, root, env);
    if (!child.pid) {
      this.config.sandbox.done();
      const failure = await child;
      throw new ToolError(`The background command could not be started: ${failure.message}`);
    }
    const c: Command = {
      id,
      command,
      description,
      startedAt: new Date(),
      pgid: child.pid,
      unread: new BoundedOutput(),
      total: 0,
      wake: new Set(),
      ended: Promise.resolve(),
      lifetime: setTimeout(
        () => this.stop(c, "lifetime").catch((e: Error) => process.stderr.write(`${e.message}\n`)),
        this.config.maxLifetimeMs,
      ),
      owner: this.taskRuns.has(ctx.signal) ? ctx.signal : undefined,
    };
    c.lifetime.unref();
    this.commands.set(id, c);
    const wakeAll = () => [...c.wake].forEach((w) => w());
    child.stdout!.on("data", (chunk: Buffer) => {
      c.unread.push(chunk);
      c.total += chunk.length;
      wakeAll();
    });
    c.ended = child.then((r) => {
      // Whatever it left running in its group ends with it, as for a foreground Run.
      killGroup(c.pgid, "SIGTERM");
      setTimeout(() => killGroup(c.pgid, "SIGKILL"), KILL_GRACE_MS).unref();
      clearTimeout(c.lifetime);
      c.exit = { code: r.exitCode ?? null, signal: r.signal ?? null, at: Date.now() };
      this.config.sandbox.done();
      this.prune();
      wakeAll();
    });
    return startedOutput(id, this.config.sandbox.active, this.config.maxLifetimeMs, Boolean(c.owner));
  }

  /** The output since the last read; waits up to waitMs for new output or the end when there is none yet. */
  async output(id: string, waitMs: number, signal?: AbortSignal, owner?: AbortSignal): Promise<ToolOutput> {
    const c = this.find(id, owner);
    if (!c.exit && c.unread.total === 0 && waitMs > 0) await this.waitFor(c, waitMs, signal);
    return present(this.read(c));
  }

  async stop(c: Command, reason: StopReason): Promise<void> {
    if (!c.exit) {
      c.stopReason ??= reason;
      // bubblewrap runs the command in a session of its own: collect the tree first, as killing its parent cuts the
      // links; and sweep for the command's token, which also finds a sandbox cloned while its parent was being killed.
      const token = tokenOf(c.id);
      const members = async () => [...new Set([...(await processTree(c.pgid)), ...(await processesWithToken(token))])];
      const first = await members();
      killGroup(c.pgid, "SIGTERM");
      signalAll(first, "SIGTERM");
      await Promise.race([c.ended, new Promise((r) => setTimeout(r, KILL_GRACE_MS).unref())]);
      killGroup(c.pgid, "SIGKILL");
      signalAll([...first, ...(await processesWithToken(token))], "SIGKILL");
      const ended = await Promise.race([
        c.ended.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), STOP_WAIT_MS).unref()),
      ]);
      // One more sweep once the group is gone: nothing carrying the token may survive.
      signalAll(await processesWithToken(token), "SIGKILL");
      const gone = ended && (await waitGone([...first, ...(await processesWithToken(token))], STOP_WAIT_MS));
      if (!gone)
        throw new ToolError(
          `${c.id} did not end within ${STOP_WAIT_MS / 1000} s of SIGKILL (process group ${c.pgid}); it may be stuck in the kernel.`,
        );
    }
    await c.ended;
  }

  /** TaskStop: kills the whole process tree and returns the last output and the exit status. */
  async stopById(id: string, owner?: AbortSignal): Promise<ToolOutput> {
    const c = this.find(id, owner);
    await this.stop(c, "TaskStop");
    return present(this.read(c));
  }

  list(owner?: AbortSignal): BackgroundSummary[] {
    return [...this.commands.values()]
      .filter((c) => !owner || c.owner === owner)
      .map((c) => ({
        run_id: c.id,
        status: status(c),
        command: c.command,
        ...(c.description && { description: c.description }),
        exit_code: c.exit?.code ?? null,
        started_at: c.startedAt.toISOString(),
        total_bytes: c.total,
      }));
  }

  /** Stops every command (server exit). */
  async close(): Promise<void> {
    this.closing = true;
    await this.stopWhere(() => true, "server exit");
  }

  private async stopWhere(match: (c: Command) => boolean, reason: StopReason): Promise<void> {
    await Promise.all(
      this.running
        .filter(match)
        .map((c) => this.stop(c, reason).catch((e: Error) => process.stderr.write(`${e.message}\n`))),
    );
  }

  private find(id: string, owner?: AbortSignal): Command {
    const c = this.commands.get(id);
    if (!c || (owner && c.owner !== owner)) {
      const known =
        this.list(owner)
          .map((k) => k.run_id)
          .join(", ") || "none";
      throw new ToolError(
        `No background command ${id}${owner ? " started by this run" : ""} (known: ${known}). Background commands are kept in memory only, so a server restart forgets them.`,
      );
    }
    return c;
  }

  private waitFor(c: Command, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        c.wake.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      c.wake.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  private read(c: Command): BackgroundView {
    const { output, omitted } = c.unread.total ? c.unread.render() : { output: "", omitted: 0 };
    c.unread = new BoundedOutput();
    const view: BackgroundView = {
      run_id: c.id,
      kind: "background_command",
      status: status(c),
      message: "",
      command: c.command,
      ...(c.description && { description: c.description }),
      output,
      omitted_chars: omitted,
      total_bytes: c.total,
      exit_code: c.exit?.code ?? null,
      signal: c.exit?.signal ?? null,
      ...(c.stopReason && c.exit && { stop_reason: c.stopReason }),
      started_at: c.startedAt.toISOString(),
      duration_ms: (c.exit?.at ?? Date.now()) - c.startedAt.getTime(),
    };
    view.message = describe(view);
    return view;
  }

  private prune(): void {
    const ended = [...this.commands.values()].filter((c) => c.exit);
    for (const c of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED))) this.commands.delete(c.id);
  }
}

const tokenOf = (id: string) => `backend-developer-mcp:${id}`;

const status = (c: Command): BackgroundView["status"] => (!c.exit ? "running" : c.stopReason ? "killed" : "exited");
