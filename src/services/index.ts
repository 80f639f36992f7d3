// Services for the workspace (--service postgres|redis): started on first use from the machine's own binaries, with data
// in a private folder, listening on 127.0.0.1 of the workspace network (src/netns.ts) or, when commands use the host's
// network, on a free host port; their variables go to every command and to verification.
import { pkg } from "../paths.js";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { WorkspaceNetwork } from "../sandbox/netns.js";
import { ToolError } from "../server/errors.js";
import { LOG_TAIL_CHARS, type ServicePlace, type ServiceSpec } from "./common.js";
import type { ServiceRequest } from "./names.js";
import { postgres } from "./postgres.js";
import { redis } from "./redis.js";

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

const SPECS: Record<string, ServiceSpec> = { postgres, redis };

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  spec: ServiceSpec;
}

export interface ServicesOptions {
  requests: ServiceRequest[];
  /** Wipe the data before the first start. */
  reset: boolean;
  /** The workspace network, or undefined when commands use the host's network. */
  network: (root: string) => Promise<WorkspaceNetwork | undefined>;
  /** Base folder for the services' data (default: a per-user folder in the system temp folder). */
  baseDir?: string;
}

export class Services {
  private started?: Promise<Record<string, string>>;
  private readonly running: Running[] = [];
  private resetDone = false;
  private closed = false;

  constructor(private readonly options: ServicesOptions) {}

  get configured(): boolean {
    return this.options.requests.length > 0;
  }

  /** The services' variables for commands in root; starts them on first use (again after a failure). */
  env(root: string): Promise<Record<string, string>> {
    if (!this.configured) return Promise.resolve({});
    this.started ??= this.startAll(root).catch((e: Error) => {
      this.started = undefined;
      throw e instanceof ToolError ? e : new ToolError(e.message);
    });
    return this.started;
  }

  private async startAll(root: string): Promise<Record<string, string>> {
    if (this.closed) throw new ToolError("The server is shutting down; services are stopped.");
    const network = await this.options.network(root);
    const base = await privateBase(this.options.baseDir);
    const workspaceDir = path.join(base, createHash("sha256").update(root).digest("hex").slice(0, 16));
    await fs.mkdir(workspaceDir, { recursive: true, mode: 0o711 });
    await fs.chmod(workspaceDir, 0o711);
    const env: Record<string, string> = {};
    for (const request of this.options.requests)
      Object.assign(env, await this.startOne(request, workspaceDir, network));
    this.resetDone = true;
    return env;
  }

  private async startOne(
    request: ServiceRequest,
    workspaceDir: string,
    network?: WorkspaceNetwork,
  ): Promise<Record<string, string>> {
    const spec = SPECS[request.name]!;
    const dir = path.join(workspaceDir, spec.name);
    const passwordFile = path.join(workspaceDir, `${spec.name}.password`);
    if (this.options.reset && !this.resetDone)
      await Promise.all([dir, passwordFile].map((p) => fs.rm(p, { recursive: true, force: true })));
    await spec.checkBinaries();
    const account = await accountFor(spec);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    if (account) await fs.chown(dir, account.uid, account.gid);
    const password = await readOrCreatePassword(passwordFile);
    const port = request.port ?? (network ? spec.defaultPort : await freeHostPort());
    const asAccount = (argv: string[], signal?: NodeJS.Signals) => [
      "setpriv",
      ...(account ? [`--reuid=${account.uid}`, `--regid=${account.gid}`, "--init-groups"] : []),
      ...(signal ? [`--pdeathsig=${signal}`] : []),
      "--",
      ...argv,
    ];
    const place: ServicePlace = { dir, port, password, asAccount };
    await spec.prepare(place);
    const argv = [...(network?.enter() ?? []), ...asAccount(await spec.command(place), spec.stopSignal)];
    const logFile = path.join(dir, "server.log");
    await fs.writeFile(logFile, "");
    if (account) await fs.chown(logFile, account.uid, account.gid);
    const logFd = openSync(logFile, "a");
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", logFd, logFd] });
    closeSync(logFd);
    const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
    let spawnError: Error | undefined;
    child.on("error", (e) => (spawnError = e));
    this.running.push({ child, exited, spec });
    const logTail = async () => (await fs.readFile(logFile, "utf8").catch(() => "")).slice(-LOG_TAIL_CHARS).trim();
    for (const end = Date.now() + READY_TIMEOUT_MS; ; await new Promise((r) => setTimeout(r, 50))) {
      const log = await fs.readFile(logFile, "utf8").catch(() => "");
      if (spawnError || child.exitCode !== null || child.signalCode !== null) {
        throw new ToolError(
          `--service ${spec.name} failed to start on 127.0.0.1:${port} (${spawnError?.message ?? `exit code ${child.exitCode ?? child.signalCode}`}). Its log ends:\n${await logTail()}`,
        );
      }
      if (await spec.ready(place, log)) break;
      if (Date.now() > end) {
        await this.stopOne(this.running.at(-1)!);
        throw new ToolError(
          `--service ${spec.name} did not accept connections within ${READY_TIMEOUT_MS / 1000} s. Its log ends:\n${await logTail()}`,
        );
      }
    }
    process.stderr.write(
      `[${pkg.name}] info: ${spec.name} ready on 127.0.0.1:${port}${network ? " (workspace network)" : ""}, data in ${dir}\n`,
    );
    return spec.env(place);
  }

  private async stopOne(r: Running): Promise<void> {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return;
    r.child.kill(r.spec.stopSignal);
    const timer = setTimeout(() => r.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await r.exited;
    clearTimeout(timer);
  }

  /** Stops every service (server exit). */
  async close(): Promise<void> {
    this.closed = true;
    await this.started?.catch(() => undefined);
    await Promise.all(this.running.splice(0).map((r) => this.stopOne(r)));
  }
}

/** The folder that holds every workspace's service data: created private, and refused if someone else owns it. */
async function privateBase(configured?: string): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const base = configured ?? path.join(os.tmpdir(), `backend-developer-mcp-services-${uid}`);
  await fs.mkdir(base, { recursive: true, mode: 0o711 });
  const st = await fs.lstat(base);
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new ToolError(
      `The services' folder ${base} is not a private folder of this user (a link, someone else's, or writable by others); remove it and try again.`,
    );
  }
  return base;
}

/** The unprivileged account a service runs as when the server is root (from /etc/passwd); undefined otherwise. */
async function accountFor(spec: ServiceSpec): Promise<{ uid: number; gid: number } | undefined> {
  if (process.geteuid?.() !== 0) return undefined;
  const passwd = (await fs.readFile("/etc/passwd", "utf8").catch(() => "")).split("\n").map((l) => l.split(":"));
  for (const name of spec.accounts) {
    const entry = passwd.find((f) => f[0] === name && f.length >= 4);
    if (entry) return { uid: Number(entry[2]), gid: Number(entry[3]) };
  }
  throw new ToolError(
    `--service ${spec.name}: the server runs as root and none of the accounts ${spec.accounts.join(", ")} exists to run it unprivileged; install the Debian package ${spec.debianPackage} (it creates one).`,
  );
}

async function readOrCreatePassword(file: string): Promise<string> {
  const existing = await fs.readFile(file, "utf8").catch(() => "");
  if (/^[0-9a-f]{32}$/.test(existing)) return existing;
  const password = randomBytes(16).toString("hex");
  await fs.writeFile(file, password, { mode: 0o600 });
  return password;
}

/** A TCP port free on the host's loopback right now. */
function freeHostPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
