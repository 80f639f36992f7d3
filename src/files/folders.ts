// Reaching files of the workspace safely while commands may race: folders held open by descriptor (Linux), temp
// files created exclusively without following links, atomic replacement, and the sweep of stale temp files.
import { randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, mkdirSync, openSync, type Stats } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { ToolError } from "../server/errors.js";
import { ripgrepPath } from "./ripgrep.js";

/**
 * The folder abs (inside the root) held open. On Linux each component is opened with O_NOFOLLOW|O_DIRECTORY through
 * the previous one's descriptor, so a component swapped for a link (by a racing command) fails instead of leading
 * outside; missing ones are created the same way when create is set, else the answer is undefined.
 * Elsewhere: the plain path (a racing swap between resolve and write is not defended there).
 */
export async function openFolder(
  root: string,
  abs: string,
  create: boolean,
  shown: () => string,
): Promise<Folder | undefined> {
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
  let fd = openSync(root, DIR_FLAGS);
  const rel = path.relative(root, abs);
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
        `${shown()} is not a folder of the workspace (a link or a file is in the way, or it changed during the write). Check the path and retry.`,
      );
    }
    throw e;
  }
  const held = fd;
  return { child: (name) => procPath(held, name), close: async () => closeSync(held) };
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
export interface Folder {
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
export async function readCurrent(folder: Folder, name: string, shown: string): Promise<CurrentFile | undefined> {
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
export async function writeAtomicIn(
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

/**
 * Removes temp files a killed server left behind: regular files named like ours (TEMP_FILE) and older than
 * STALE_TEMP_MS, found by ripgrep (ignored files included, .git and node_modules skipped, at most SWEEP_TIMEOUT_MS).
 * Names in the workspace are attacker-controlled, so each is reached through verified folders, checked without
 * following links and unlinked (never a folder, never a link's target). Returns how many went.
 */
export async function removeStaleTemps(
  root: string,
  open: (abs: string) => Promise<Folder | undefined>,
): Promise<number> {
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
  const listed = await execa(await ripgrepPath(), args, {
    cwd: root,
    reject: false,
    timeout: SWEEP_TIMEOUT_MS,
    stdin: "ignore",
  });
  let removed = 0;
  for (const rel of String(listed.stdout).split("\n")) {
    if (!TEMP_FILE.test(path.basename(rel)) || path.isAbsolute(rel) || rel.split("/").includes("..")) continue;
    const abs = path.join(root, rel);
    const folder = await open(path.dirname(abs)).catch(() => undefined);
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

/** The error code of a failed system call (ENOENT, ELOOP, …). */
export function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}
