import fs from "node:fs/promises";
import path from "node:path";
import { callTool, type Tool, type ToolContext } from "./tool.js";
import type { Check, Verification } from "./records.js";
import type { RunResult } from "./tools/run.js";

export type { Check, Verification } from "./records.js";

const TAIL_CHARS = 4_000;
const NPM_DEFAULT_TEST = /no test specified/;
const tail = (s: string) => (s.length > TAIL_CHARS ? `…${s.slice(-TAIL_CHARS)}` : s);

/** TypeScript diagnostics (ts-morph) of the changed .ts files, when the workspace has a tsconfig.json. */
async function typeCheck(root: string, changed: string[]): Promise<Check | undefined> {
  const tsFiles = changed.filter((f) => /\.(c|m)?tsx?$/.test(f) && !f.endsWith(".d.ts"));
  const tsconfig = path.join(root, "tsconfig.json");
  if (!tsFiles.length || !(await fs.stat(tsconfig).catch(() => undefined))) return undefined;
  const { Project } = await import("ts-morph");
  const project = new Project({ tsConfigFilePath: tsconfig });
  const lines: string[] = [];
  for (const file of tsFiles) {
    const abs = path.join(root, file);
    const source = project.getSourceFile(abs) ?? project.addSourceFileAtPathIfExists(abs);
    if (!source) continue;
    for (const d of source.getPreEmitDiagnostics()) {
      const text = d.getMessageText();
      const message = typeof text === "string" ? text : text.getMessageText();
      lines.push(`${file}:${d.getLineNumber() ?? 0}: error TS${d.getCode()}: ${message}`);
    }
  }
  return { name: "typescript", passed: lines.length === 0, details: tail(lines.join("\n")) };
}

/** The workspace's test command: the one configured, else package.json's test script. */
export async function testCommand(root: string, configured?: string): Promise<string | undefined> {
  if (configured) return configured;
  const pkg = await fs.readFile(path.join(root, "package.json"), "utf8").then(JSON.parse, () => undefined);
  const script = pkg?.scripts?.test;
  return typeof script === "string" && !NPM_DEFAULT_TEST.test(script) ? "npm test" : undefined;
}

/** The server's own checks of the work: never the model's word for it. */
export async function verify(ctx: ToolContext, run: Tool, changed: string[], configuredTest?: string): Promise<Verification> {
  const checks: Check[] = [];
  ctx.progress("verifying: type-check");
  const ts = await typeCheck(ctx.ws.root, changed);
  if (ts) checks.push(ts);
  const command = await testCommand(ctx.ws.root, configuredTest);
  if (command) {
    ctx.progress(`verifying: ${command}`);
    const result = await callTool(run, { command, timeout: 600_000 }, ctx);
    const r = result.structuredContent as RunResult | undefined;
    const passed = !result.isError && r?.exit_code === 0;
    const output = r?.output ?? result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
    checks.push({ name: "tests", command, passed, details: passed ? "" : tail(`exit code ${r?.exit_code ?? "?"}${r?.timed_out ? " (timed out)" : ""}\n${output}`) });
  }
  const note = checks.length ? undefined : "Nothing to verify: no tsconfig.json with changed TypeScript files, and no test script in package.json.";
  return { passed: checks.every((c) => c.passed), checks, note };
}
