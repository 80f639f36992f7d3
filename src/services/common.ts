// What every service module shares: its description, finding binaries, running helper programs.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { ToolError } from "../server/errors.js";

export const LOG_TAIL_CHARS = 2_000;

/** Where and how one service instance runs. */
export interface ServicePlace {
  /** Private folder of this service for this workspace (data, log); owned by the account it runs as. */
  dir: string;
  port: number;
  password: string;
  /** Runs a program as the service's account (setpriv when the server is root; with the parent-death signal). */
  asAccount: (argv: string[], deathSignal?: NodeJS.Signals) => string[];
}

export interface ServiceSpec {
  name: string;
  /** What to install when a binary is missing. */
  debianPackage: string;
  /** Port inside the workspace network. */
  defaultPort: number;
  /** Unprivileged account to run as when the server is root, first one that exists. */
  accounts: string[];
  /** Signal that shuts it down cleanly (also sent if the server dies). */
  stopSignal: NodeJS.Signals;
  /** Throws, naming the package, when a program it needs is missing. */
  checkBinaries(): Promise<void>;
  /** Creates the data on first use; throws with what went wrong. */
  prepare(place: ServicePlace): Promise<void>;
  /** The server program's argv. */
  command(place: ServicePlace): Promise<string[]>;
  /** Whether it accepts connections (from its files or its log). */
  ready(place: ServicePlace, log: string): Promise<boolean>;
  env(place: ServicePlace): Record<string, string>;
}

/** A program on PATH or in one of the extra folders, else an error naming the package. */
export async function findBinary(
  name: string,
  spec: Pick<ServiceSpec, "name" | "debianPackage">,
  extraDirs: string[] = [],
): Promise<string> {
  for (const dir of [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...extraDirs]) {
    const candidate = path.join(dir, name);
    if (
      await fs.access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  throw new ToolError(
    `--service ${spec.name}: ${name} was not found on PATH. Install it (Debian/Ubuntu: apt-get install ${spec.debianPackage}) and restart the server.`,
  );
}

/** Output of a finished helper program, or an error with its tail. */
export function runHelper(argv: string[], what: string, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
    child.on("error", (e) => reject(new Error(`${what}: ${e.message}`)));
    child.on("close", (code) =>
      code === 0
        ? resolve(out)
        : reject(new Error(`${what} failed (exit code ${code}):\n${out.slice(-LOG_TAIL_CHARS).trim()}`)),
    );
  });
}
