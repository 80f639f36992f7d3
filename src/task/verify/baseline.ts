import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { exportTree, readBlob, type GitDir } from "../git.js";
import { Workspace } from "../../files/workspace.js";
import type { CheckSpec } from "./detect.js";
import { runProjectChecks, type ExecOptions, type RawResult } from "./exec.js";

/**
 * The checks' results at the checkpoint, for telling the run's failures from those already there.
 * The checkpoint is written out (from the server's own git directory) into a folder in the sandbox's temp folder, never into the workspace;
 * ignored dependency folders are linked from the workspace (read-only inside the sandbox, which may write only in
 * the copy and its temp folder); the copy is deleted once its checks ran. Results are kept per checkpoint, so fix
 * rounds do not recompute them.
 */

const DEPENDENCY_DIRS = ["node_modules", ".venv", "venv", "vendor"];
const CACHE_LIMIT = 200;
const cache = new Map<string, RawResult>();
const cacheKey = (workdir: string, checkpoint: string, s: CheckSpec) =>
  [workdir, checkpoint, s.project, s.name, s.script].join("\0");

/** A reader of files as they were at the checkpoint, from the server's own git directory. */
export function checkpointReader(repo: GitDir, checkpoint: string): (rel: string) => Promise<string | undefined> {
  return (rel) => readBlob(repo, checkpoint, rel);
}

/** Whether every folder from dir down to dir/rel is a real folder (no link): the copy holds the checkpoint's links as they were. */
async function realFoldersDown(dir: string, rel: string): Promise<boolean> {
  let at = dir;
  for (const part of rel.split("/").filter((p) => p && p !== ".")) {
    at = path.join(at, part);
    if (!(await fs.lstat(at).catch(() => undefined))?.isDirectory()) return false;
  }
  return true;
}

/**
 * Links each project's ignored dependency folders (node_modules, .venv, vendor) from the workspace into the copy; never
 * through a link in the copy (a project folder that was a link at the checkpoint would put the link outside).
 */
async function linkDependencies(workdir: string, dir: string, projects: string[]): Promise<void> {
  for (const project of new Set([".", ...projects])) {
    if (!(await realFoldersDown(dir, project))) continue;
    for (const name of DEPENDENCY_DIRS) {
      const source = path.join(workdir, project, name);
      const target = path.join(dir, project, name);
      if (existsSync(source) && !(await fs.lstat(target).catch(() => undefined)))
        await fs.symlink(source, target, "dir").catch(() => undefined);
    }
  }
}

/** The results of specs at the checkpoint; undefined for a spec when the checkpoint could not be materialised. */
export async function baselineResults(
  specs: CheckSpec[],
  repo: GitDir,
  checkpoint: string,
  o: ExecOptions,
): Promise<Map<CheckSpec, RawResult>> {
  const workdir = o.ctx.ws.root;
  const out = new Map<CheckSpec, RawResult>();
  const todo = specs.filter((s) => {
    const hit = cache.get(cacheKey(workdir, checkpoint, s));
    if (hit) out.set(s, hit);
    return !hit;
  });
  if (!todo.length) return out;
  const dir = path.join(o.tmpdir, `baseline-${randomBytes(8).toString("hex")}`);
  await fs.mkdir(dir, { recursive: true });
  try {
    await exportTree(repo, checkpoint, dir);
    await linkDependencies(
      workdir,
      dir,
      todo.map((s) => s.project),
    );
    const ctx = { ...o.ctx, ws: await Workspace.open(dir), progress: (m: string) => o.ctx.progress(`baseline · ${m}`) };
    for (const group of groupByProject(todo)) {
      const results = await runProjectChecks(group, { ...o, ctx, baseline: true });
      results.forEach((r) => out.set(r.spec, r));
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  for (const s of todo) {
    const r = out.get(s);
    if (!r) continue;
    cache.set(cacheKey(workdir, checkpoint, s), r);
    if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  }
  return out;
}

/** Specs grouped per project folder, order kept: each group runs as one sandboxed command. */
export function groupByProject(specs: CheckSpec[]): CheckSpec[][] {
  const groups = new Map<string, CheckSpec[]>();
  for (const s of specs) {
    groups.set(s.project, [...(groups.get(s.project) ?? []), s]);
  }
  return [...groups.values()];
}
