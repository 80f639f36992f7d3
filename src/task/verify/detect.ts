import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { readRegularText } from "../../files/regular.js";
import { packageRoot } from "../../paths.js";
import { CONFIG_FILE, checksConfigSchema, type ParserName } from "./schema.js";

/** Detects the projects a run touched and the checks each one gets, per stack. */

export type Stack = "node" | "python" | "go" | "rust" | "java" | "configured";

export interface CheckSpec {
  name: string;
  /** Project folder, relative to the workspace root ("." for the root). */
  project: string;
  stack: Stack;
  /** The command as a person would type it in the project folder. */
  command: string;
  /** What actually runs (in the project folder, in the sandbox); "{report}" is replaced by a private report file. */
  script: string;
  parser: ParserName;
  /** Programs that must exist (on PATH, or as a path relative to the project) for the check to run. */
  requires: string[];
  /** Output meaning the tool or the dependencies it needs offline are missing (e.g. "No module named pytest"): not run. */
  missing?: { pattern: RegExp; reason: string }[];
  /** Exit code meaning "nothing to check" (pytest's 5: no tests collected). */
  nothingExit?: { code: number; reason: string };
  /** Report files the tool writes in the project folder (Surefire, Gradle), read after the run. */
  reportDirs?: string[];
}

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
const NPM_DEFAULT_TEST = /no test specified/;

export const onPath = (cmd: string) =>
  (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, cmd)));
const shq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
const exists = (p: string) =>
  fs.stat(p).then(
    () => true,
    () => false,
  );
const readText = async (p: string) => (await readRegularText(p)) ?? "";

/** Reads a file (path relative to the workspace) as it was at the checkpoint; undefined when it did not exist. */
export type AtCheckpoint = (rel: string) => Promise<string | undefined>;
const nowhere: AtCheckpoint = async () => undefined;
const relFile = (project: string, name: string) => (project === "." ? name : `${project}/${name}`);

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

/** Offline, a dependency missing from the local cache means the check could not run, not that the code is wrong. */
const GO_OFFLINE = [
  {
    pattern: /module lookup disabled by GOPROXY=off|GOPROXY=off.*(cannot|not) (find|download)/,
    reason: "go: a module is not in the local module cache (checks run offline)",
  },
];
const CARGO_OFFLINE = [
  {
    pattern: /(no matching package named|failed to (download|load source for)).*[\s\S]*offline/,
    reason: "cargo: a dependency is not in the local registry cache (checks run offline)",
  },
];
const MAVEN_OFFLINE = [
  {
    pattern: /in offline mode and the artifact \S+ has not been downloaded/,
    reason: "maven: plugins or dependencies are not in the local repository (checks run offline)",
  },
];
const GRADLE_OFFLINE = [
  {
    pattern: /No cached version of \S+ available for offline mode|Could not (download|resolve) .*offline/,
    reason: "gradle: dependencies are not in the local cache (checks run offline)",
  },
];

const STACK_CHECKS: Record<
  Exclude<Stack, "configured">,
  (dir: string, project: string, root: string, before: AtCheckpoint) => Promise<CheckSpec[]>
> = {
  node: nodeChecks,
  python: pythonChecks,
  go: async (_dir, project) => [
    {
      name: "go build",
      project,
      stack: "go",
      command: "go build ./...",
      script: "go build ./...",
      parser: "diagnostics",
      requires: ["go"],
      missing: GO_OFFLINE,
    },
    {
      name: "go vet",
      project,
      stack: "go",
      command: "go vet ./...",
      script: "go vet ./...",
      parser: "diagnostics",
      requires: ["go"],
      missing: GO_OFFLINE,
    },
    {
      name: "go test",
      project,
      stack: "go",
      command: "go test ./...",
      script: "go test -json ./...",
      parser: "go-json",
      requires: ["go"],
      missing: GO_OFFLINE,
    },
  ],
  rust: async (_dir, project) => [
    {
      name: "cargo check",
      project,
      stack: "rust",
      command: "cargo check --offline",
      script: "cargo check --offline --message-format=short",
      parser: "diagnostics",
      requires: ["cargo"],
      missing: CARGO_OFFLINE,
    },
    {
      name: "cargo test",
      project,
      stack: "rust",
      command: "cargo test --offline",
      script: "cargo test --offline --no-fail-fast",
      parser: "cargo-test",
      requires: ["cargo"],
      missing: CARGO_OFFLINE,
    },
  ],
  java: javaChecks,
};

const scriptsOf = (text: string | undefined): Record<string, unknown> => {
  try {
    const scripts = (JSON.parse(text ?? "{}") as { scripts?: unknown }).scripts;
    return scripts && typeof scripts === "object" ? (scripts as Record<string, unknown>) : {};
  } catch {
    return {};
  }
};

async function nodeChecks(dir: string, project: string, root: string, before: AtCheckpoint): Promise<CheckSpec[]> {
  // Scripts the project had at the checkpoint count too: a run that deletes its test script fails that check, it does not skip it.
  const scripts = {
    ...scriptsOf(await before(relFile(project, "package.json"))),
    ...scriptsOf(await readText(path.join(dir, "package.json"))),
  };
  const pm =
    existsSync(path.join(dir, "pnpm-lock.yaml")) && onPath("pnpm")
      ? "pnpm"
      : existsSync(path.join(dir, "yarn.lock")) && onPath("yarn")
        ? "yarn"
        : "npm";
  const has = (name: string) =>
    typeof scripts[name] === "string" && !(name === "test" && NPM_DEFAULT_TEST.test(scripts[name] as string));
  const specs: CheckSpec[] = [];
  const typecheck = ["typecheck", "type-check"].find(has);
  for (const [name, script] of [
    ["typecheck", typecheck],
    ["lint", has("lint") && "lint"],
    ["build", has("build") && "build"],
  ] as const) {
    if (script)
      specs.push({
        name,
        project,
        stack: "node",
        command: `${pm} run ${script}`,
        script: `${pm} run ${script}`,
        parser: "diagnostics",
        requires: ["node", pm],
      });
  }
  // The project's own typecheck script is its whole-project type check; without one, the server runs tsc (or ts-morph) over tsconfig.json.
  // A tsconfig.json that is no regular file (a FIFO would hang the check until its timeout) is not type-checked.
  const tsconfig = await fs.stat(path.join(dir, "tsconfig.json")).catch(() => undefined);
  if (!typecheck && tsconfig?.isFile()) specs.push(await tscCheck(dir, project, root));
  if (has("test"))
    specs.push({
      name: "test",
      project,
      stack: "node",
      command: `${pm} test`,
      script: `${pm} test`,
      parser: "tests",
      requires: ["node", pm],
    });
  return specs;
}

/** tsc from the workspace's own typescript (nearest node_modules/.bin up to the root), else ts-morph (dist/ts-check.js) in the sandbox. */
async function tscCheck(dir: string, project: string, root: string): Promise<CheckSpec> {
  for (let d = dir; ; d = path.dirname(d)) {
    const bin = path.join(d, "node_modules", ".bin", "tsc");
    if (await exists(bin)) {
      const rel = path.relative(dir, bin);
      return {
        name: "tsc",
        project,
        stack: "node",
        command: "tsc --noEmit -p tsconfig.json",
        script: `${shq(rel)} --noEmit --pretty false -p tsconfig.json`,
        parser: "diagnostics",
        requires: ["node"],
      };
    }
    if (d === root || path.dirname(d) === d) break;
  }
  return {
    name: "tsc",
    project,
    stack: "node",
    command: "ts-morph diagnostics of the tsconfig.json program (the server's own TypeScript)",
    script: `node ${shq(path.join(packageRoot, "dist", "ts-check.js"))} tsconfig.json`,
    parser: "diagnostics",
    requires: ["node"],
  };
}

async function pythonChecks(dir: string, project: string): Promise<CheckSpec[]> {
  const pyproject = await readText(path.join(dir, "pyproject.toml"));
  const setupCfg = await readText(path.join(dir, "setup.cfg"));
  const venv = [".venv", "venv"].find((v) => existsSync(path.join(dir, v, "bin", "python")));
  const [python, requires] = venv
    ? [`${venv}/bin/python`, [`${venv}/bin/python`]]
    : existsSync(path.join(dir, "uv.lock")) && onPath("uv")
      ? ["uv run --offline --frozen python", ["uv"]]
      : existsSync(path.join(dir, "poetry.lock")) && onPath("poetry")
        ? ["poetry run python", ["poetry"]]
        : ["python3", ["python3"]];
  const missing = (mod: string) => [
    { pattern: new RegExp(`No module named ${mod}\\b`), reason: `${mod}: not installed for ${python}` },
  ];
  const specs: CheckSpec[] = [
    {
      name: "pytest",
      project,
      stack: "python",
      command: `${python} -m pytest`,
      parser: "junit",
      requires,
      script: `${python} -m pytest -q -p no:cacheprovider -o junit_family=xunit1 --junitxml={report}`,
      missing: missing("pytest"),
      nothingExit: { code: 5, reason: "pytest collected no tests" },
    },
  ];
  const ruffConfigured =
    /^\[tool\.ruff/m.test(pyproject) ||
    existsSync(path.join(dir, "ruff.toml")) ||
    existsSync(path.join(dir, ".ruff.toml"));
  if (ruffConfigured) {
    const ruff = venv && existsSync(path.join(dir, venv, "bin", "ruff")) ? `${venv}/bin/ruff` : "ruff";
    specs.push({
      name: "ruff",
      project,
      stack: "python",
      command: `${ruff} check .`,
      script: `${ruff} check --no-cache --output-format=concise .`,
      parser: "diagnostics",
      requires: [ruff],
    });
  }
  const mypyConfigured =
    /^\[tool\.mypy\]/m.test(pyproject) ||
    /^\[mypy\]/m.test(setupCfg) ||
    existsSync(path.join(dir, "mypy.ini")) ||
    existsSync(path.join(dir, ".mypy.ini"));
  if (mypyConfigured) {
    specs.push({
      name: "mypy",
      project,
      stack: "python",
      command: `${python} -m mypy .`,
      script: `${python} -m mypy --no-error-summary --cache-dir=/dev/null .`,
      parser: "diagnostics",
      requires,
      missing: missing("mypy"),
    });
  }
  return specs;
}

async function javaChecks(dir: string, project: string): Promise<CheckSpec[]> {
  const maven = existsSync(path.join(dir, "pom.xml"));
  const wrapper = maven ? "mvnw" : "gradlew";
  const tool = existsSync(path.join(dir, wrapper)) ? `./${wrapper}` : maven ? "mvn" : "gradle";
  const [command, script, reportDirs] = maven
    ? [`${tool} -o test`, `rm -rf target/surefire-reports && ${tool} -o -q -B test`, ["target/surefire-reports"]]
    : [
        `${tool} test --offline`,
        `rm -rf build/test-results/test && ${tool} test --offline -q --console=plain`,
        ["build/test-results/test"],
      ];
  return [
    {
      name: maven ? "maven test" : "gradle test",
      project,
      stack: "java",
      command,
      script,
      parser: "junit",
      requires: ["java", tool],
      reportDirs,
      missing: maven ? MAVEN_OFFLINE : GRADLE_OFFLINE,
    },
  ];
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
