import fs from "node:fs/promises";
import path from "node:path";
import { readRegularText } from "../../files/regular.js";
import { CONFIG_FILE, checksConfigSchema } from "./schema.js";
import { type AtCheckpoint, type CheckSpec, nowhere, type Stack } from "./spec.js";
import { STACK_CHECKS } from "./stacks.js";

export { type AtCheckpoint, type CheckSpec, onPath, type Stack } from "./spec.js";

/** Detects the projects a run touched and the checks each one gets, per stack. */

const MANIFESTS: [Stack, RegExp][] = [
  ["node", /^(package|tsconfig)\.json$/],
  ["python", /^(pyproject\.toml|setup\.cfg|setup\.py|requirements[\w.-]*\.txt)$/],
  ["go", /^go\.mod$/],
  ["rust", /^Cargo\.toml$/],
  ["java", /^(pom\.xml|build\.gradle(\.kts)?)$/],
];
const SKIPPED_DIRS = new Set([
  "node_modules",
  ".git",
  ".backend-agent",
  ".venv",
  "venv",
  "vendor",
  "target",
  "dist",
  "build",
  "__pycache__",
]);
/** The stacks whose manifest is in dir. */
async function stacksIn(dir: string): Promise<Stack[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return MANIFESTS.filter(([, re]) => names.some((n) => re.test(n))).map(([s]) => s);
}

/** The nearest folder with a manifest above each changed file (up to the root); the root itself when nothing changed. */
export async function touchedProjects(root: string, changed: string[]): Promise<string[]> {
  const found = new Set<string>();
  const seen = new Map<string, string | undefined>();
  const nearest = async (rel: string): Promise<string | undefined> => {
    if (seen.has(rel)) return seen.get(rel);
    const here = (await stacksIn(path.join(root, rel))).length
      ? rel
      : rel === "."
        ? undefined
        : await nearest(path.dirname(rel));
    seen.set(rel, here);
    return here;
  };
  const realRoot = await fs.realpath(root);
  for (const file of changed) {
    if (file.split("/").some((part) => SKIPPED_DIRS.has(part))) continue;
    const project = await nearest(path.dirname(file));
    // A project reached through a symbolic link out of the workspace is not the workspace's.
    const real = project && (await fs.realpath(path.join(root, project)).catch(() => ""));
    if (project && real && (real === realRoot || real.startsWith(realRoot + path.sep))) found.add(project);
  }
  if (!changed.length && (await stacksIn(root)).length) found.add(".");
  return [...found].sort();
}

/** Every project folder in the workspace (manifests up to 3 levels deep), for telling the agent what will be checked. */
export async function allProjects(root: string, limit = 8): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string, depth: number): Promise<void> => {
    if (out.length >= limit) return;
    if ((await stacksIn(path.join(root, rel))).length) out.push(rel);
    if (depth >= 3) return;
    const entries = await fs.readdir(path.join(root, rel), { withFileTypes: true }).catch(() => []);
    for (const e of entries)
      if (e.isDirectory() && !e.name.startsWith(".") && !SKIPPED_DIRS.has(e.name))
        await walk(rel === "." ? e.name : `${rel}/${e.name}`, depth + 1);
  };
  await walk(".", 0);
  return out;
}

/** The checks of one project folder, per stack found there. */
export async function checksFor(root: string, project: string, before: AtCheckpoint = nowhere): Promise<CheckSpec[]> {
  const dir = path.join(root, project);
  const specs: CheckSpec[] = [];
  for (const stack of await stacksIn(dir))
    specs.push(...(await STACK_CHECKS[stack as Exclude<Stack, "configured">](dir, project, root, before)));
  return specs;
}

/** The committed checks file, as it was at the checkpoint when there is one (the agent cannot rewrite how it is judged). */
export async function configuredChecks(root: string, before?: AtCheckpoint): Promise<CheckSpec[] | undefined> {
  const text = before ? await before(CONFIG_FILE) : await readRegularText(path.join(root, CONFIG_FILE));
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(
      `${CONFIG_FILE} is not valid JSON (${(e as Error).message}); fix it, or delete it to let the server detect the checks.`,
    );
  }
  const parsed = checksConfigSchema.safeParse(json);
  if (!parsed.success)
    throw new Error(
      `${CONFIG_FILE} is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}.`,
    );
  return parsed.data.checks.map((c) => {
    const folder = path.posix.normalize(c.folder.replaceAll("\\", "/")).replace(/\/$/, "") || ".";
    if (folder.startsWith("..") || path.isAbsolute(folder))
      throw new Error(`${CONFIG_FILE}: folder "${c.folder}" must be inside the workspace.`);
    return {
      name: c.name,
      project: folder,
      stack: "configured" as const,
      command: c.command,
      script: c.command,
      parser: c.parse,
      requires: [],
    };
  });
}

/** The server's plan: the committed checks, else each touched project's checks; --test-command replaces the root's tests. */
export async function planChecks(
  root: string,
  projects: string[],
  testCommand?: string,
  before?: AtCheckpoint,
): Promise<CheckSpec[]> {
  const configured = await configuredChecks(root, before);
  if (configured) return configured;
  const specs = (await Promise.all(projects.map((p) => checksFor(root, p, before)))).flat();
  if (!testCommand) return specs;
  const isTest = (s: CheckSpec) =>
    s.project === "." && ["test", "pytest", "go test", "cargo test", "maven test", "gradle test"].includes(s.name);
  return [
    ...specs.filter((s) => !isTest(s)),
    {
      name: "test",
      project: ".",
      stack: "configured",
      command: testCommand,
      script: testCommand,
      parser: "tests",
      requires: [],
    },
  ];
}
