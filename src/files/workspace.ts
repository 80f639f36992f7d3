import { constants, realpathSync, type Stats } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { cacheRoot } from "../compile-cache.js";
import { ToolError } from "../server/errors.js";
import {
  type CurrentFile,
  errno,
  type Folder,
  openFolder,
  readCurrent,
  removeStaleTemps,
  writeAtomicIn,
} from "./folders.js";

export type { CurrentFile } from "./folders.js";

const MAX_PATH = 4096;
const MAX_SEGMENT = 255;

/** Decides whether a path may be used: pure string checks, then the real location on disk. */
export function checkPathString(p: unknown): string {
  if (typeof p !== "string" || p.trim() === "")
    throw new ToolError("file_path is empty: give a path inside the workspace, e.g. src/index.ts");
  if (p.includes("\0")) throw new ToolError("The path contains a NUL byte; remove it.");
  if (p.length > MAX_PATH)
    throw new ToolError(`The path is ${p.length} characters long; paths are limited to ${MAX_PATH}.`);
  if (p.split(/[\\/]/).some((s) => Buffer.byteLength(s) > MAX_SEGMENT))
    throw new ToolError(`A path segment is longer than ${MAX_SEGMENT} bytes.`);
  return p;
}

export function isInside(root: string, target: string): boolean {
  return target === root || target.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/** realpath of the longest existing prefix, with the rest appended; dangling links are followed by hand (at most 40). */
async function realLocation(abs: string, hops = 0): Promise<string> {
  if (hops > 40) throw new ToolError("Too many levels of symbolic links.");
  try {
    return await fs.realpath(abs);
  } catch (e) {
    if (errno(e) !== "ENOENT" && errno(e) !== "ENOTDIR") throw e;
  }
  const parent = path.dirname(abs);
  if (parent === abs) return abs;
  const realParent = await realLocation(parent, hops);
  const link = await fs.lstat(abs).catch(() => undefined);
  if (link?.isSymbolicLink()) return realLocation(path.resolve(realParent, await fs.readlink(abs)), hops + 1);
  return path.join(realParent, path.basename(abs));
}

/**
 * Servers run the code in their compile cache with their own rights (src/compile-cache.ts): a workspace holding that
 * folder would let its commands plant code for every later start, so it is refused (checked whatever Node runs this
 * server: another server, on a Node with the cache, would load what this one's commands wrote).
 */
async function refuseIfHoldsCompileCache(dir: string, root: string): Promise<void> {
  const cache = cacheRoot();
  if (!cache || !isInside(root, await realLocation(cache))) return;
  throw new Error(
    `Cannot use workspace ${dir}: it holds this server's compile cache (${cache}), code the server runs with its own rights that commands in the workspace could change. Open a project folder instead, or set XDG_CACHE_HOME to a folder outside ${root}.`,
  );
}

/**
 * Drops from the server's PATH the entries a workspace could fill: empty or relative ones (found from whatever the
 * current folder is) and those inside root (npm run puts <project>/node_modules/.bin first). The server, the sandbox
 * runtime (which, bwrap, socat) and commands then never run a program the workspace planted.
 */
export function keepPathOutside(root: string): void {
  const real = (d: string) => {
    try {
      return realpathSync(d);
    } catch {
      return d;
    }
  };
  const entries = (process.env.PATH ?? "").split(path.delimiter);
  const kept = entries.filter((d) => path.isAbsolute(d) && !isInside(root, real(d)));
  if (kept.length !== entries.length) process.env.PATH = kept.join(path.delimiter);
}

interface ReadStamp {
  mtimeMs: number;
  size: number;
}

export class Workspace {
  private readonly reads = new Map<string, ReadStamp>();
  private readonly locks = new Map<string, Promise<unknown>>();

  private constructor(readonly root: string) {}

  static async open(dir: string): Promise<Workspace> {
    let root: string;
    try {
      root = await fs.realpath(path.resolve(dir));
      if (!(await fs.stat(root)).isDirectory()) throw new Error(`${dir} is not a directory`);
      await fs.access(root, constants.R_OK | constants.W_OK | constants.X_OK);
    } catch (e) {
      const reason =
        errno(e) === "ENOENT"
          ? "it does not exist"
          : errno(e) === "EACCES"
            ? "permission denied"
            : (e as Error).message;
      throw new Error(`Cannot use workspace ${dir}: ${reason}`);
    }
    await refuseIfHoldsCompileCache(dir, root);
    keepPathOutside(root);
    return new Workspace(root);
  }

  /** Resolves a user path to its real absolute location inside the workspace, or throws. */
  async resolve(p: unknown, mode: "read" | "write" = "read"): Promise<string> {
    const given = checkPathString(p);
    const real = await realLocation(path.resolve(this.root, given));
    if (!isInside(this.root, real)) {
      throw new ToolError(
        `Access denied: ${given} resolves to ${real}, which is outside the workspace ${this.root}. Use a path inside the workspace.`,
      );
    }
    if (mode === "write" && this.relative(real).split(path.sep).includes(".git")) {
      throw new ToolError(`Writing inside .git/ is not allowed (${given}). Use git commands through Run instead.`);
    }
    return real;
  }

  relative(abs: string): string {
    return path.relative(this.root, abs) || ".";
  }

  recordRead(abs: string, st: Stats): void {
    this.reads.set(abs, { mtimeMs: st.mtimeMs, size: st.size });
  }

  /** Throws unless the file was read in this session and has not changed on disk since. */
  assertFresh(abs: string, st: Stats): void {
    const stamp = this.reads.get(abs);
    const name = this.relative(abs);
    if (!stamp) throw new ToolError(`${name} has not been read in this session. Read it first, then retry.`);
    if (stamp.mtimeMs !== st.mtimeMs || stamp.size !== st.size) {
      throw new ToolError(
        `${name} changed on disk since it was last read. Read it again, then retry with the current content.`,
      );
    }
  }

  /** Runs fn with exclusive access to one file (serialises concurrent edits of it). */
  async withLock<T>(abs: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(abs) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(fn);
    this.locks.set(abs, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(abs) === next) this.locks.delete(abs);
    }
  }

  /**
   * Replaces the file at abs (a path from resolve) under its lock: reads the current file through verified folder
   * descriptors, lets change compute the new bytes from it (undefined when there is none), writes them atomically in the
   * same folder and records the result as read. create: make missing folders (Write) rather than treat them as no file.
   */
  async replaceFile(
    abs: string,
    create: boolean,
    change: (current: CurrentFile | undefined) => Buffer,
  ): Promise<{ before?: Stats; after: Stats }> {
    if (abs === this.root || !isInside(this.root, abs))
      throw new ToolError(`${this.relative(abs)} is not a file inside the workspace; give a file path.`);
    return this.withLock(abs, async () => {
      const folder = await this.openFolder(path.dirname(abs), create);
      try {
        const current = folder && (await readCurrent(folder, path.basename(abs), this.relative(abs)));
        const data = change(current);
        if (!folder) throw new ToolError(`Folder ${this.relative(path.dirname(abs))} does not exist.`);
        const after = await writeAtomicIn(folder.child, path.basename(abs), data, current?.st);
        this.recordRead(abs, after);
        return { before: current?.st, after };
      } finally {
        await folder?.close();
      }
    });
  }

  /** Removes temp files a killed server left behind (see removeStaleTemps); returns how many went. */
  removeStaleTemps(): Promise<number> {
    return removeStaleTemps(this.root, (abs) => this.openFolder(abs, false));
  }

  /** The folder abs (inside the root) held open: see openFolder. */
  private openFolder(abs: string, create: boolean): Promise<Folder | undefined> {
    return openFolder(this.root, abs, create, () => this.relative(abs));
  }
}
