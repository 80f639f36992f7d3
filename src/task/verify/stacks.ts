// The checks each stack gets: Node/TypeScript scripts and whole-project type check, pytest/ruff/mypy, go build/vet/test,
// cargo check/test, Maven/Gradle tests; offline, with their "could not run" signs.
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { packageRoot } from "../../paths.js";
import {
  type AtCheckpoint,
  type CheckSpec,
  exists,
  NPM_DEFAULT_TEST,
  onPath,
  readText,
  relFile,
  shq,
  type Stack,
} from "./spec.js";

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

export const STACK_CHECKS: Record<
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
