// Node's module compile cache (Node >= 22.1) for the server's own code: later starts skip most of the compiling.
// Only Node's built-ins here: this runs before the rest of the server is loaded.
import { lstatSync, mkdirSync, realpathSync } from "node:fs";
import module from "node:module";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const NAME = "backend-developer-mcp";

/** The per-user cache folder for this package: XDG_CACHE_HOME or ~/.cache, ~/Library/Caches, %LOCALAPPDATA%. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string | undefined {
  const base =
    process.platform === "win32"
      ? env.LOCALAPPDATA
      : process.platform === "darwin"
        ? path.join(home, "Library", "Caches")
        : env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME)
          ? env.XDG_CACHE_HOME
          : path.join(home, ".cache");
  return base && path.isAbsolute(base) ? path.join(base, NAME, "compile-cache") : undefined;
}

const readArgs = (argv: string[]) =>
  parseArgs({
    args: argv,
    options: {
      workspace: { type: "string", short: "w", multiple: true },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
    strict: false,
    allowPositionals: true,
  }).values;

/** Whether the command starts the server: `init`, --help and --version write nothing, a cache included. */
export function startsServer(argv: string[]): boolean {
  const values = readArgs(argv);
  return argv[0] !== "init" && values.help !== true && values.version !== true;
}

/** The folders the workspace may be: each --workspace given, else the current folder (the default workspace). */
export function workspaceCandidates(argv: string[], cwd = process.cwd()): string[] {
  const values = readArgs(argv);
  const given = (values.workspace ?? []).filter((w): w is string => typeof w === "string");
  return given.length ? given.map((w) => path.resolve(cwd, w)) : [cwd];
}

const real = (p: string) => {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
};
const inside = (root: string, p: string) =>
  p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

/**
 * The cache folder if it is safe to use: a real folder (not a link) owned by this user, writable by no one else,
 * and not inside a workspace (whose files an agent or a cloned project controls: cached code runs as ours).
 */
export function safeCacheDir(dir: string, workspaces: string[]): string | undefined {
  const roots = workspaces.map(real);
  const outside = (p: string) => !roots.some((w) => inside(w, p));
  if (!outside(real(dir))) return undefined;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) return undefined;
  if (process.platform !== "win32" && (st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0)) return undefined;
  const at = real(dir);
  return outside(at) ? at : undefined;
}

/**
 * Turns on the compile cache when this Node has one (a no-op on Node 20) and NODE_COMPILE_CACHE has not already;
 * any problem leaves it off. Node checks each entry against the source and its own version, so a stale or corrupt
 * entry is only compiled again.
 */
export function enableCompileCache(argv = process.argv.slice(2)): void {
  const enable = (module as { enableCompileCache?: (dir?: string) => unknown }).enableCompileCache;
  if (typeof enable !== "function" || process.env.NODE_COMPILE_CACHE || process.env.NODE_DISABLE_COMPILE_CACHE) return;
  try {
    if (!startsServer(argv)) return;
    const root = cacheRoot();
    const dir = root && safeCacheDir(root, workspaceCandidates(argv));
    if (dir) enable(dir);
  } catch {
    // no cache: start as before
  }
}
