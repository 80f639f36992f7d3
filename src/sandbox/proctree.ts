// Process trees on Linux, from /proc: bubblewrap runs a sandboxed command in a session of its own, outside the process
// group the server kills, and relies on a parent-death signal to end it. Collecting the tree first, then signalling
// every member, ends it even when that signal is lost.
import { readdirSync } from "node:fs";
import fs from "node:fs/promises";

/** The pids of live processes, the server's own left out ([] without /proc). */
export function otherPids(): number[] {
  try {
    return readdirSync("/proc")
      .filter((e) => /^\d+$/.test(e))
      .map(Number)
      .filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

/** The process and all its descendants (Linux /proc; just the process elsewhere). */
export async function processTree(root: number): Promise<number[]> {
  const entries = await fs.readdir("/proc").catch(() => [] as string[]);
  const children = new Map<number, number[]>();
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (e) => {
        const stat = await fs.readFile(`/proc/${e}/stat`, "utf8").catch(() => "");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid) children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
      }),
  );
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/**
 * Processes whose command line holds token. A process bubblewrap cloned a moment before its parent was killed has no
 * link to the tree any more and may have missed the parent-death signal; it still carries the command line.
 */
export async function processesWithToken(token: string): Promise<number[]> {
  const found = await Promise.all(
    otherPids().map(async (pid) =>
      (await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).includes(token) ? pid : 0,
    ),
  );
  return found.filter(Boolean);
}

/** Running, as opposed to gone or a zombie waiting to be reaped. */
const isAlive = async (pid: number) => {
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
};
const anyAlive = async (pids: number[]) => (await Promise.all(pids.map(isAlive))).some(Boolean);

export function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

export async function waitGone(pids: number[], ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20)))
    if (!(await anyAlive(pids))) return true;
  return !(await anyAlive(pids));
}

/** SIGTERM to the group and the whole tree now, SIGKILL to both after graceMs. */
export async function killTree(pgid: number, graceMs: number): Promise<void> {
  const tree = await processTree(pgid);
  signalGroup(pgid, "SIGTERM");
  signalAll(tree, "SIGTERM");
  setTimeout(() => {
    signalGroup(pgid, "SIGKILL");
    signalAll(tree, "SIGKILL");
  }, graceMs).unref();
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}
