import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";

/** An expected failure whose message is shown to the model as-is. */
export class ToolError extends Error {}

const MAX_PATH = 4096;
const MAX_SEGMENT = 255;

/** Decides whether a path may be used: pure string checks, then the real location on disk. */
export function checkPathString(p: unknown): string {
  if (typeof p !== "string" || p.trim() === "") throw new ToolError("file_path is empty: give a path inside the workspace, e.g. src/index.ts");
  if (p.includes("\0")) throw new ToolError("The path contains a NUL byte; remove it.");
  if (p.length > MAX_PATH) throw new ToolError(`The path is ${p.length} characters long; paths are limited to ${MAX_PATH}.`);
  if (p.split(/[\\/]/).some((s) => Buffer.byteLength(s) > MAX_SEGMENT)) throw new ToolError(`A path segment is longer than ${MAX_SEGMENT} bytes.`);
  return p;
}

export function isInside(root: string, target: string): boolean {
  return target === root || target.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/** realpath of the longest existing prefix, with the rest appended; dangling links are followed by hand. */
async function realLocation(abs: string, depth = 0): Promise<string> {
  if (depth > 40) throw new ToolError("Too many levels of symbolic links.");
  try {
    return await fs.realpath(abs);
  } catch (e) {
    if (errno(e) !== "ENOENT" && errno(e) !== "ENOTDIR") throw e;
  }
  const link = await fs.lstat(abs).catch(() => undefined);
  if (link?.isSymbolicLink()) {
    const parent = await realLocation(path.dirname(abs), depth + 1);
    return realLocation(path.resolve(parent, await fs.readlink(abs)), depth + 1);
  }
  const parent = path.dirname(abs);
  if (parent === abs) return abs;
  return path.join(await realLocation(parent, depth + 1), path.basename(abs));
}

export function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

interface ReadStamp {
  mtimeMs: number;
  size: number;
}

export interface TextFile {
  text: string;
  encoding: "utf8" | "utf16le";
  bom: boolean;
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
      const reason = errno(e) === "ENOENT" ? "it does not exist" : errno(e) === "EACCES" ? "permission denied" : (e as Error).message;
      throw new Error(`Cannot use workspace ${dir}: ${reason}`);
    }
    return new Workspace(root);
  }

  /** Resolves a user path to its real absolute location inside the workspace, or throws. */
  async resolve(p: unknown, mode: "read" | "write" = "read"): Promise<string> {
    const given = checkPathString(p);
    const real = await realLocation(path.resolve(this.root, given));
    if (!isInside(this.root, real)) {
      throw new ToolError(`Access denied: ${given} resolves to ${real}, which is outside the workspace ${this.root}. Use a path inside the workspace.`);
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
      throw new ToolError(`${name} changed on disk since it was last read. Read it again, then retry with the current content.`);
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

  /** Writes atomically (see writeFileAtomic) and records the result as read. */
  async writeAtomic(abs: string, data: Buffer, existing?: Stats): Promise<Stats> {
    const st = await writeFileAtomic(abs, data, existing);
    this.recordRead(abs, st);
    return st;
  }

}

/** Writes via a temp file in the same folder, fsync and rename, so a failure never leaves a half-written file; keeps the mode of the file it replaces (given as existing). */
export async function writeFileAtomic(file: string, data: Buffer | string, existing?: Stats): Promise<Stats> {
  if (!existing) await fs.mkdir(path.dirname(file), { recursive: true });
  const mode = existing ? existing.mode & 0o7777 : 0o644;
  const tmp = path.join(path.dirname(file), `.${path.basename(file).slice(0, 200)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await fs.open(tmp, "wx", mode);
  try {
    if (existing) await handle.chmod(mode);
    await handle.writeFile(data);
    await handle.sync();
    const st = await handle.stat();
    await handle.close();
    await fs.rename(tmp, file);
    return st;
  } catch (e) {
    await handle.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

export function decodeText(buf: Buffer): TextFile {
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) return { text: buf.subarray(3).toString("utf8"), encoding: "utf8", bom: true };
  if (buf[0] === 0xff && buf[1] === 0xfe) return { text: buf.subarray(2).toString("utf16le"), encoding: "utf16le", bom: true };
  return { text: buf.toString("utf8"), encoding: "utf8", bom: false };
}

export function encodeText(file: TextFile): Buffer {
  const body = Buffer.from(file.text, file.encoding);
  if (!file.bom) return body;
  return Buffer.concat([file.encoding === "utf8" ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.from([0xff, 0xfe]), body]);
}

/** True when the bytes look binary: a NUL byte early on, unless it is UTF-16 with a BOM. */
export function looksBinary(buf: Buffer): boolean {
  if (buf[0] === 0xff && buf[1] === 0xfe) return false;
  return buf.subarray(0, 8192).includes(0);
}

export function usesCRLF(text: string): boolean {
  const crlf = text.split("\r\n").length - 1;
  return crlf > 0 && crlf >= (text.split("\n").length - 1) / 2;
}

/** Converts lone LF to CRLF when the file uses CRLF and the model sent LF. */
export function matchLineEndings(text: string, crlf: boolean): string {
  return crlf ? text.replace(/\r?\n/g, "\r\n") : text;
}
