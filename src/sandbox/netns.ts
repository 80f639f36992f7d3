// One network per workspace. The sandbox runtime gives every command its own empty network namespace (bwrap
// --unshare-net) with its own proxy relays inside. Here a holder process keeps one namespace alive for the workspace,
// with one relay pair (127.0.0.1:3128 → the runtime's HTTP proxy socket, :1080 → its SOCKS socket), and every sandboxed
// command enters it (nsenter) before bubblewrap starts: the runtime's command line is adapted, strictly, or refused.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";

/** Ports of the runtime's in-sandbox relays, which its proxy variables (HTTP_PROXY=http://localhost:3128, …) name. */
const RELAY_PORTS = { http: 3128, socks: 1080 } as const;
const START_TIMEOUT_MS = 10_000;

/** The runtime built a command line this module does not know how to adapt. */
export class NetworkJoinError extends Error {
  constructor(problem: string) {
    let version = "?";
    try {
      version = (
        JSON.parse(
          readFileSync(new URL("../node_modules/@anthropic-ai/sandbox-runtime/package.json", import.meta.url), "utf8"),
        ) as { version: string }
      ).version;
    } catch {
      // bundled elsewhere: the version is only for the message
    }
    super(
      `The OS sandbox's command line is not the one this server knows how to join to the workspace network (@anthropic-ai/sandbox-runtime ${version}): ${problem}. ` +
        "Nothing ran: commands are not started with a network of their own instead. Install the runtime version package-lock.json names (npm ci), or adapt src/netns.ts.",
    );
  }
}

/** The words of a string made by the runtime's quote(): bare words, or single-quoted parts joined by "'" for a quote. */
export function unquote(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    let word = "";
    let any = false;
    while (i < line.length && line[i] !== " ") {
      any = true;
      if (line.startsWith(`"'"`, i)) {
        word += "'";
        i += 3;
      } else if (line[i] === "'") {
        const end = line.indexOf("'", i + 1);
        if (end < 0) throw new NetworkJoinError("an unterminated quote");
        word += line.slice(i + 1, end);
        i = end + 1;
      } else if (/[A-Za-z0-9_./:=@+,-]/.test(line[i]!)) word += line[i++];
      else throw new NetworkJoinError(`an unexpected character ${JSON.stringify(line[i])} at ${i}`);
    }
    if (!any) throw new NetworkJoinError("two spaces in a row");
    words.push(word);
    i++;
  }
  return words;
}

/** The runtime's quoting: bare when safe, else single-quoted. */
export function quote(words: string[]): string {
  return words
    .map((w) => (/^[A-Za-z0-9_./:@+,-][A-Za-z0-9_./:=@+,-]*$/.test(w) ? w : `'${w.replaceAll("'", `'"'"'`)}'`))
    .join(" ");
}

export interface Relays {
  http: string;
  socks: string;
}

/** The relay lines the runtime puts at the top of the in-sandbox script, and what they connect to. */
const RELAY_LINE = (port: number) =>
  new RegExp(`^\\S*socat TCP-LISTEN:${port},fork,reuseaddr UNIX-CONNECT:(\\S+) >/dev/null 2>&1 &$`);

/**
 * Rewrites the runtime's bwrap command line for a shared network: drops --unshare-net and the per-command relays
 * (the workspace network has its own pair). Throws NetworkJoinError on any shape it does not recognise.
 */
export function adaptCommandLine(wrapped: string): { words: string[]; relays?: Relays } {
  const words = unquote(wrapped);
  const bwrap = words.findIndex((w) => path.basename(w) === "bwrap");
  if (bwrap < 0) throw new NetworkJoinError("no bwrap in it");
  const n = words.length;
  if (words[n - 4] !== "--" || words[n - 2] !== "-c")
    throw new NetworkJoinError("it does not end with `-- <shell> -c <script>`");
  const options = words.slice(bwrap + 1, n - 4);
  const unshares = options.filter((w) => w === "--unshare-net").length;
  if (unshares !== 1) throw new NetworkJoinError(`--unshare-net appears ${unshares} times, not once`);
  if (options.some((w) => w === "--share-net" || w === "--unshare-all"))
    throw new NetworkJoinError("it has --share-net or --unshare-all");
  const at = bwrap + 1 + options.indexOf("--unshare-net");
  const adapted = [...words.slice(0, at), ...words.slice(at + 1)];
  const script = adapted.at(-1)!;
  // With the proxy: `<shell> -c '<socat http &>\n<socat socks &>\n<trap>\n<the command>'`.
  if (!/^\S+ -c '/.test(script)) return { words: withoutInnerShell(adapted) };
  const inner = unquote(script);
  if (inner.length !== 3 || inner[1] !== "-c")
    throw new NetworkJoinError("the in-sandbox script is not `<shell> -c <script>`");
  const lines = inner[2]!.split("\n");
  const http = RELAY_LINE(RELAY_PORTS.http).exec(lines[0] ?? "");
  const socks = RELAY_LINE(RELAY_PORTS.socks).exec(lines[1] ?? "");
  if (!http || !socks || !lines[2]?.startsWith("trap ")) {
    if (lines.some((l) => /TCP-LISTEN/.test(l))) throw new NetworkJoinError("its proxy relay lines changed");
    return { words: withoutInnerShell(adapted) };
  }
  adapted[adapted.length - 1] = lines.slice(3).join("\n");
  return { words: withoutInnerShell(adapted), relays: { http: http[1]!, socks: socks[1]! } };
}

/**
 * `… -- <shell> -c '<apply-seccomp> <shell> -c <command>'` becomes `… -- <apply-seccomp> <shell> -c <command>`: the
 * same programs, one shell fewer. Any other shape is left as it is.
 */
export function withoutInnerShell(words: string[]): string[] {
  const [shell, dashC, script] = words.slice(-3);
  if (dashC !== "-c" || !script || !script.includes("apply-seccomp ")) return words;
  let inner: string[];
  try {
    inner = unquote(script);
  } catch {
    return words;
  }
  if (inner.length !== 4 || path.basename(inner[0]!) !== "apply-seccomp" || inner[1] !== shell || inner[2] !== "-c")
    return words;
  return [...words.slice(0, -3), ...inner];
}

/** A network namespace kept alive by a holder process, shared by the workspace's commands and services. */
export class WorkspaceNetwork {
  private dead?: string;
  private constructor(
    private readonly holder: ChildProcess,
    readonly holderPid: number,
    private readonly fds: { net: number; user?: number },
  ) {
    holder.on("exit", (code, signal) => (this.dead ??= `its holder process ended (${signal ?? `exit code ${code}`})`));
  }

  /** Starts the holder (bubblewrap: its own network and process namespaces, plus a user namespace unless root) and the relays. */
  static async start(relays?: Relays): Promise<WorkspaceNetwork> {
    const asRoot = process.geteuid?.() === 0;
    const relay = (port: number, socket: string) =>
      `socat TCP-LISTEN:${port},fork,reuseaddr ${quote([`UNIX-CONNECT:${socket}`])} >/dev/null 2>&1 &`;
    const script = [
      ...(relays ? [relay(RELAY_PORTS.http, relays.http), relay(RELAY_PORTS.socks, relays.socks)] : []),
      "exec sleep infinity",
    ].join("\n");
    const namespaces = ["--unshare-net", "--unshare-pid", ...(asRoot ? [] : ["--unshare-user"])];
    const args = [
      "--die-with-parent",
      ...namespaces,
      "--dev-bind",
      "/",
      "/",
      "--info-fd",
      "3",
      "--",
      "/bin/sh",
      "-c",
      script,
    ];
    const holder = spawn("bwrap", args, { stdio: ["ignore", "ignore", "pipe", "pipe"] });
    let stderr = "";
    holder.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const failed = (why: string) => {
      holder.kill("SIGKILL");
      return new Error(`Could not create the workspace network: ${why}${stderr ? `\n${stderr.trim()}` : ""}`);
    };
    const info = await new Promise<string>((resolve, reject) => {
      let text = "";
      const timer = setTimeout(
        () => reject(failed("bubblewrap did not report its namespaces in time")),
        START_TIMEOUT_MS,
      );
      holder.on("error", (e) => reject(failed(e.message)));
      holder.on("exit", (code) => reject(failed(`bubblewrap exited with code ${code}`)));
      holder.stdio[3]!.on("data", (d: Buffer) => (text += d.toString()));
      holder.stdio[3]!.on("end", () => {
        clearTimeout(timer);
        resolve(text);
      });
      holder.stdio[3]!.on("error", () => undefined);
    });
    const pid = (JSON.parse(info) as { "child-pid"?: number })["child-pid"];
    if (!pid) throw failed(`bubblewrap reported no child pid (${info.trim()})`);
    // Held open by the server, the namespace can never be confused with another one that reuses the pid.
    const net = openSync(`/proc/${pid}/ns/net`, "r");
    const user = asRoot ? undefined : openSync(`/proc/${pid}/ns/user`, "r");
    const network = new WorkspaceNetwork(holder, pid, { net, user });
    if (relays) {
      const ready = await network.waitFor(
        () => network.listening([RELAY_PORTS.http, RELAY_PORTS.socks]),
        START_TIMEOUT_MS,
      );
      if (!ready) {
        await network.close();
        throw failed("the proxy relays did not start listening");
      }
    }
    return network;
  }

  /** The argv prefix that runs a program inside this network (as the server's user). */
  enter(): string[] {
    if (this.dead) throw new Error(`The workspace network is gone: ${this.dead}. Restart the server.`);
    const fd = (n: number) => `/proc/${process.pid}/fd/${n}`;
    return [
      "nsenter",
      `--net=${fd(this.fds.net)}`,
      ...(this.fds.user === undefined ? [] : [`--user=${fd(this.fds.user)}`, "--preserve-credentials"]),
      "--",
    ];
  }

  /** Whether all these TCP ports listen on the network (from /proc/<holder>/net/tcp). */
  async listening(ports: number[]): Promise<boolean> {
    const tables = await Promise.all(
      ["tcp", "tcp6"].map((t) => fs.readFile(`/proc/${this.holderPid}/net/${t}`, "utf8").catch(() => "")),
    );
    const open = new Set(
      tables
        .flatMap((t) => t.split("\n").slice(1))
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f[3] === "0A")
        .map((f) => parseInt(f[1]!.split(":")[1]!, 16)),
    );
    return ports.every((p) => open.has(p));
  }

  private async waitFor(check: () => Promise<boolean>, ms: number): Promise<boolean> {
    for (const end = Date.now() + ms; Date.now() < end && !this.dead; await new Promise((r) => setTimeout(r, 25)))
      if (await check()) return true;
    return check();
  }

  async close(): Promise<void> {
    this.dead ??= "the server closed it";
    if (this.holder.exitCode === null && this.holder.signalCode === null) {
      const exited = new Promise((r) => this.holder.once("exit", r));
      this.holder.kill("SIGKILL");
      await exited;
    }
    for (const fd of [this.fds.net, this.fds.user]) if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The workspace network as the sandbox uses it: started on the first command, with the relays that command's line
 * names. isolated: the runtime confines the network (default, --allow-domain); false with --allow-network, where
 * commands use the host's network and already share its loopback.
 */
export class SharedNetwork {
  private network?: Promise<WorkspaceNetwork>;

  constructor(readonly isolated: boolean) {}

  /** The words to run instead of the runtime's line: the same sandbox, inside the workspace network. */
  async join(wrapped: string): Promise<string[]> {
    if (!this.isolated) {
      const words = unquote(wrapped);
      if (words.includes("--unshare-net"))
        throw new NetworkJoinError("it isolates the network although --allow-network is set");
      return withoutInnerShell(words);
    }
    const { words, relays } = adaptCommandLine(wrapped);
    const network = await this.ready(relays);
    return [...network.enter(), ...words];
  }

  /** The network, started with these relays when it does not exist yet; undefined when commands use the host's. */
  async ready(relays?: Relays): Promise<WorkspaceNetwork> {
    this.network ??= WorkspaceNetwork.start(relays).catch((e: Error) => {
      this.network = undefined;
      throw e;
    });
    return this.network;
  }

  get started(): boolean {
    return this.network !== undefined;
  }

  async close(): Promise<void> {
    const network = await this.network?.catch(() => undefined);
    this.network = undefined;
    await network?.close();
  }
}
