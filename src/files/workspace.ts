import { randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, mkdirSync, openSync, type Stats } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { ToolError } from "../server/errors.js";
import { rgPath } from "@vscode/ripgrep";

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

export function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
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

  /**
   * Removes temp files a killed server left behind: regular files named like ours (TEMP_FILE) and older than
   * STALE_TEMP_MS, found by ripgrep (ignored files included, .git and node_modules skipped, at most SWEEP_TIMEOUT_MS).
   * Names in the workspace are attacker-controlled, so each is reached through verified folders, checked without
   * following links and unlinked (never a folder, never a link's target). Returns how many went.
   */
  async removeStaleTemps(): Promise<number> {
    const { execa } = await import("execa");
    const args = [
      "--files",
      "--hidden",
      "--no-ignore",
      "--no-config",
      "--no-messages",
      "--glob",
      "!.git",
      "--glob",
      "!node_modules",
      "--glob",
      ".*.tmp",
    ];
    const listed = await execa(rgPath, args, {
      cwd: this.root,
      reject: false,
      timeout: SWEEP_TIMEOUT_MS,
      stdin: "ignore",
    });
    let removed = 0;
    for (const rel of String(listed.stdout).split("\n")) {
      if (!TEMP_FILE.test(path.basename(rel)) || path.isAbsolute(rel) || rel.split("/").includes("..")) continue;
      const abs = path.join(this.root, rel);
      const folder = await this.openFolder(path.dirname(abs), false).catch(() => undefined);
      if (!folder) continue;
      try {
        const file = folder.child(path.basename(abs));
        const st = await fs.lstat(file);
        if (st.isFile() && Date.now() - st.mtimeMs > STALE_TEMP_MS) await fs.unlink(file).then(() => removed++);
      } catch {
        // gone or changed meanwhile
      } finally {
        await folder.close();
      }
    }
    return removed;
  }

  /**
   * The folder abs (inside the root) held open. On Linux each component is opened with O_NOFOLLOW|O_DIRECTORY through
   * the previous one's descriptor, so a component swapped for a link (by a racing command) fails instead of leading
   * outside; missing ones are created the same way when create is set, else the answer is undefined.
   * Elsewhere: the plain path (a racing swap between resolve and write is not defended there).
   */
  private async openFolder(abs: string, create: boolean): Promise<Folder | undefined> {
    if (!PROC_FD) {
      if (create) await fs.mkdir(abs, { recursive: true });
      else if (
        !(await fs.stat(abs).then(
          (st) => st.isDirectory(),
          () => false,
        ))
      )
        return undefined;
      return { child: (name) => path.join(abs, name), close: async () => undefined };
    }
    // Synchronous on purpose: a few cheap syscalls (about 15 µs per level) instead of a thread-pool hop each.
    let fd = openSync(this.root, DIR_FLAGS);
    const rel = path.relative(this.root, abs);
    try {
      for (const part of rel ? rel.split(path.sep) : []) {
        const at = procPath(fd, part);
        let next = openDirOrUndefined(at);
        if (next === undefined && !create) return void closeSync(fd);
        if (next === undefined) {
          mkdirOrExisting(at);
          next = openSync(at, DIR_FLAGS);
        }
        closeSync(fd);
        fd = next;
      }
    } catch (e) {
      closeSync(fd);
      if (errno(e) === "ELOOP" || errno(e) === "ENOTDIR") {
        throw new ToolError(
          `${this.relative(abs)} is not a folder of the workspace (a link or a file is in the way, or it changed during the write). Check the path and retry.`,
        );
      }
      throw e;
    }
    const held = fd;
    return { child: (name) => procPath(held, name), close: async () => closeSync(held) };
  }
}

function openDirOrUndefined(at: string): number | undefined {
  try {
    return openSync(at, DIR_FLAGS);
  } catch (e) {
    if (errno(e) === "ENOENT") return undefined;
    throw e;
  }
}

function mkdirOrExisting(at: string): void {
  try {
    mkdirSync(at);
  } catch (e) {
    if (errno(e) !== "EEXIST") throw e;
  }
}

/** A folder reached safely: child(name) is a path the kernel resolves inside that very folder. */
interface Folder {
  child(name: string): string;
  close(): Promise<void>;
}

export interface CurrentFile {
  data: Buffer;
  st: Stats;
}

/** Whether folders can be held by descriptor and reached through /proc/self/fd (Linux). */
const PROC_FD = process.platform === "linux" && existsSync("/proc/self/fd");
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const procPath = (fd: number, name: string) => `/proc/self/fd/${fd}/${name}`;

/** The file name in folder, without following a final link and without blocking on a FIFO; undefined when absent. */
async function readCurrent(folder: Folder, name: string, shown: string): Promise<CurrentFile | undefined> {
  const handle = await fs
    .open(folder.child(name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
    .catch((e) => {
      if (errno(e) === "ENOENT") return undefined;
      if (errno(e) === "ELOOP")
        throw new ToolError(
          `${shown} became a symbolic link during the write; nothing was written. Check the path and retry.`,
        );
      return Promise.reject(e);
    });
  if (!handle) return undefined;
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new ToolError(`${shown} is a directory; give a file path.`);
    if (!st.isFile()) throw new ToolError(`${shown} is not a regular file.`);
    return { data: await handle.readFile(), st };
  } finally {
    await handle.close();
  }
}

/** A temp file older than this cannot belong to a write in progress. */
const STALE_TEMP_MS = 10 * 60_000;
const SWEEP_TIMEOUT_MS = 20_000;

/** Matches the temp files writeAtomicIn makes: .<name>.<12 hex>.tmp */
const TEMP_FILE = /^\..+\.[0-9a-f]{12}\.tmp$/;

/**
 * Writes via a temp file in the same folder (reached through child), fsync and rename, so a failure never leaves a
 * half-written file; keeps the mode of the file it replaces (given as existing). The temp file is created exclusively
 * and without following links.
 */
async function writeAtomicIn(
  child: (name: string) => string,
  name: string,
  data: Buffer | string,
  existing?: Stats,
): Promise<Stats> {
  const mode = existing ? existing.mode & 0o7777 : 0o644;
  const tmp = `.${name.slice(0, 200)}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await fs.open(
    child(tmp),
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    if (existing) await handle.chmod(mode);
    await handle.writeFile(data);
    await handle.sync();
    const st = await handle.stat();
    await handle.close();
    await fs.rename(child(tmp), child(name));
    return st;
  } catch (e) {
    await handle.close().catch(() => undefined);
    await fs.rm(child(tmp), { force: true });
    throw e;
  }
}

/** Writes a file outside any workspace (server-owned paths) atomically; see writeAtomicIn. */
export async function writeFileAtomic(file: string, data: Buffer | string, existing?: Stats): Promise<Stats> {
  if (!existing) await fs.mkdir(path.dirname(file), { recursive: true });
  return writeAtomicIn((name) => path.join(path.dirname(file), name), path.basename(file), data, existing);
}
