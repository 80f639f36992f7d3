import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import stripAnsi from "strip-ansi";
import { callTool, type Tool, type ToolContext } from "../../server/tool.js";
import { type CommandResult, commandResultSchema } from "../../sandbox/command.js";
import { onPath, type CheckSpec } from "./detect.js";

/** Runs checks through the Run tool (same sandbox, environment allowlist, timeout and kill as the agent's commands). */

export interface RawResult {
  spec: CheckSpec;
  result: "passed" | "failed" | "not_run";
  reason?: string;
  exitCode?: number;
  durationMs: number;
  output: string;
  reports: string[];
}

export interface ExecOptions {
  run: Tool;
  ctx: ToolContext;
  /** The sandbox's private temp folder: writable inside it, readable by the server. */
  tmpdir: string;
  /** Running at the checkpoint copy: imports must come from it, not from an editable install pointing at the workspace. */
  baseline?: boolean;
}

const RUN_LIMIT_MS = 600_000;
const MAX_OUTPUT_BYTES = 1_000_000;
const MAX_REPORT_BYTES = 5_000_000;
const MAX_REPORTS = 200;
const shq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Variables that keep toolchains offline and their caches in the sandbox's temp folder. */
function toolchainEnv(tmpdir: string, projectDir: string, baseline: boolean): string {
  const cache = path.join(tmpdir, "check-caches");
  const cargoTarget = path.join(
    cache,
    "cargo-target",
    createHash("sha256").update(projectDir).digest("hex").slice(0, 16),
  );
  const vars: Record<string, string> = {
    CI: "1",
    GOCACHE: `${cache}/go-build`,
    GOPROXY: "off",
    GOSUMDB: "off",
    GOTOOLCHAIN: "local",
    PIP_NO_INDEX: "1",
    PIP_DISABLE_PIP_VERSION_CHECK: "1",
    PYTHONDONTWRITEBYTECODE: "1",
    UV_OFFLINE: "1",
    UV_CACHE_DIR: `${cache}/uv`,
    RUFF_CACHE_DIR: `${cache}/ruff`,
    POETRY_CACHE_DIR: `${cache}/poetry`,
    CARGO_TARGET_DIR: cargoTarget,
    CARGO_NET_OFFLINE: "true",
    npm_config_offline: "true",
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
    npm_config_cache: `${cache}/npm`,
  };
  const lines = Object.entries(vars).map(([k, v]) => `export ${k}=${shq(v)}`);
  if (baseline) lines.push(`export PYTHONPATH="$PWD/src:$PWD\${PYTHONPATH:+:$PYTHONPATH}"`);
  return lines.join("\n");
}

/** One shell script for a project's checks: one sandbox start per project, each check's output, exit code and times in files. */
function projectScript(specs: CheckSpec[], project: string, reportDir: string, env: string): string {
  const R = shq(reportDir);
  const steps = specs.map((s, i) => {
    const script = s.script.replaceAll("{report}", shq(path.join(reportDir, `${i}.xml`)));
    return [
      `echo "$EPOCHREALTIME" > ${R}/${i}.start`,
      `( ${script}\n) > ${R}/${i}.out 2>&1 < /dev/null`,
      `echo $? > ${R}/${i}.code`,
      `echo "$EPOCHREALTIME" > ${R}/${i}.end`,
    ].join("\n");
  });
  return [`cd -- ${shq(project)} || exit 97`, env, ...steps].join("\n");
}

/** Reads a file the sandboxed command wrote, refusing links and anything huge (the tail is kept). */
async function readBounded(file: string, max: number): Promise<string | undefined> {
  const st = await fs.lstat(file).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const handle = await fs.open(file, "r");
  try {
    const length = Math.min(st.size, max);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, st.size - length);
    return buf.toString("utf8");
  } finally {
    await handle.close();
  }
}

async function reportsIn(dir: string, names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const name of names
    .filter((n) => n.endsWith(".xml"))
    .sort()
    .slice(0, MAX_REPORTS)) {
    const text = await readBounded(path.join(dir, name), MAX_REPORT_BYTES);
    if (text) out.push(text);
  }
  return out;
}

/** Which required program is missing, if any: on PATH, or as a path relative to the project. */
function missingProgram(spec: CheckSpec, projectDir: string): string | undefined {
  return spec.requires.find((p) => (p.includes("/") ? !existsSync(path.join(projectDir, p)) : !onPath(p)));
}

const seconds = (s: string | undefined) => (s && /^\d+(\.\d+)?$/.test(s.trim()) ? Number(s.trim()) * 1000 : undefined);

/** Runs one project's checks (those whose toolchain exists) in one sandboxed command and reads their results. */
export async function runProjectChecks(specs: CheckSpec[], o: ExecOptions): Promise<RawResult[]> {
  const root = o.ctx.ws.root;
  const project = specs[0]!.project;
  const projectDir = path.join(root, project);
  const results = new Map<CheckSpec, RawResult>();
  if (!existsSync(projectDir)) for (const s of specs) results.set(s, notRun(s, `the folder ${project} does not exist`));
  for (const s of specs) {
    const missing = !results.has(s) && missingProgram(s, projectDir);
    if (missing) results.set(s, notRun(s, `${missing}: not installed`));
  }
  const runnable = specs.filter((s) => !results.has(s));
  if (runnable.length) {
    const reportDir = path.join(o.tmpdir, `checks-${randomBytes(8).toString("hex")}`);
    await fs.mkdir(reportDir, { recursive: true });
    try {
      const started = Date.now();
      const call = await callTool(
        o.run,
        {
          command: projectScript(runnable, project, reportDir, toolchainEnv(o.tmpdir, projectDir, Boolean(o.baseline))),
          timeout: RUN_LIMIT_MS,
        },
        o.ctx,
      );
      const run = commandResultSchema.safeParse(call.structuredContent).data;
      const fallbackMs = Date.now() - started;
      for (const [i, spec] of runnable.entries())
        results.set(spec, await readResult(spec, i, reportDir, projectDir, root, run, fallbackMs / runnable.length));
    } finally {
      await fs.rm(reportDir, { recursive: true, force: true });
    }
  }
  return specs.map((s) => results.get(s)!);
}

const notRun = (spec: CheckSpec, reason: string): RawResult => ({
  spec,
  result: "not_run",
  reason,
  durationMs: 0,
  output: "",
  reports: [],
});

async function readResult(
  spec: CheckSpec,
  i: number,
  reportDir: string,
  projectDir: string,
  root: string,
  run: CommandResult | undefined,
  fallbackMs: number,
): Promise<RawResult> {
  const file = (ext: string) => readBounded(path.join(reportDir, `${i}.${ext}`), MAX_OUTPUT_BYTES);
  const [code, start, end, rawOutput] = await Promise.all([file("code"), file("start"), file("end"), file("out")]);
  const output = stripAnsi(rawOutput ?? "")
    .replaceAll(`${root}/`, "")
    .replaceAll(root, ".");
  const startMs = seconds(start);
  const endMs = seconds(end);
  const durationMs =
    startMs !== undefined && endMs !== undefined ? Math.round(endMs - startMs) : Math.round(fallbackMs);
  if (code === undefined) {
    const why = run?.timed_out
      ? `the project's checks exceeded Run's ${RUN_LIMIT_MS / 60_000}-minute limit`
      : run?.cancelled
        ? "cancelled"
        : "it did not finish";
    if (start === undefined) return { ...notRun(spec, why), output };
    return { spec, result: "failed", reason: why, durationMs, output: `${output}\n[${why}]`, reports: [] };
  }
  const exitCode = Number(code.trim());
  const missing = exitCode !== 0 && spec.missing?.find((m) => m.pattern.test(output));
  if (missing) return { ...notRun(spec, missing.reason), durationMs, output };
  if (spec.nothingExit?.code === exitCode) return { ...notRun(spec, spec.nothingExit.reason), durationMs, output };
  const reports = spec.script.includes("{report}") ? [await file("xml")].filter((r): r is string => Boolean(r)) : [];
  for (const dir of spec.reportDirs ?? [])
    reports.push(
      ...(await reportsIn(path.join(projectDir, dir), await fs.readdir(path.join(projectDir, dir)).catch(() => []))),
    );
  return { spec, result: exitCode === 0 ? "passed" : "failed", exitCode, durationMs, output, reports };
}
