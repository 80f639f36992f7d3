import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { demoWorkspace, pythonDemoSteps } from "../src/testing/demo.js";
import { reply, say, ScriptedModel, use, type Step } from "../src/testing/scripted-model.js";
import type { TaskReport } from "../src/task/runs.js";
import { parseDiagnostics, parseTestText, withoutPosition } from "../src/task/verify/parse.js";
import { connect, tempDir, text } from "./helpers.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});

async function runTask(
  files: Record<string, string>,
  steps: Step[],
  options: { env?: Record<string, string>; args?: string[]; setup?: (ws: string) => Promise<void> } = {},
) {
  const ws = await tempDir("bdm-verify-");
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(ws, name)), { recursive: true });
    await fs.writeFile(path.join(ws, name), content);
  }
  await options.setup?.(ws);
  const model = new ScriptedModel(steps);
  const url = await model.start();
  const conn = await connect(["--workspace", ws, ...(options.args ?? [])], {
    env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: url, ...options.env },
  });
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
    () => fs.rm(ws, { recursive: true, force: true }),
  );
  const result = await conn.call("Task", { description: "verify test", prompt: "Do the task." });
  return { model, ws, report: result.structuredContent as unknown as TaskReport, text: text(result) };
}

const done = (n = 1) => Array.from({ length: n }, () => reply(say("Done: everything passes.")));
const fixRounds = (model: ScriptedModel) =>
  model.requests
    .map((r) => JSON.stringify(r.messages.at(-1)?.content))
    .filter((c) => c.includes("The server ran its own checks"));
const REPO_MODULES = path.resolve(import.meta.dirname, "..", "node_modules");

const TS_PROJECT = {
  "package.json": JSON.stringify({ name: "greeter", type: "module" }),
  "tsconfig.json": JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, target: "ES2022", module: "NodeNext" },
    include: ["src"],
  }),
  "src/greet.ts": "export function greet(name: string): string {\n  return `hello ${name}`;\n}\n",
  "src/use.ts": 'import { greet } from "./greet.js";\nexport const message = greet("ann");\n',
};
const BREAK_GREET: Step[] = [
  reply(use("Read", { file_path: "src/greet.ts" })),
  reply(
    use("Write", {
      file_path: "src/greet.ts",
      content:
        "export function greet(name: string, excited: boolean): string {\n  return `hello ${name}${excited ? '!' : ''}`;\n}\n",
    }),
  ),
];

describe("TypeScript: the whole project is type-checked", () => {
  test("with the workspace's own typescript (tsc), a change breaking an unchanged file is named", async () => {
    const { model, report } = await runTask(TS_PROJECT, [...BREAK_GREET, ...done(3)], {
      setup: (ws) => fs.symlink(REPO_MODULES, path.join(ws, "node_modules"), "dir"),
    });
    expect(report.status).toBe("verification_failed");
    const tsc = report.verification!.checks.find((c) => c.name === "tsc")!;
    expect(tsc.command).toBe("tsc --noEmit -p tsconfig.json");
    expect(tsc.newly_failing).toEqual([
      expect.stringMatching(/^src\/use\.ts: error TS2554: Expected 2 arguments, but got 1\.$/),
    ]);
    expect(fixRounds(model)[0]).toContain("src/use.ts");
  });

  test("without typescript installed, ts-morph checks the whole tsconfig program", async () => {
    const { report } = await runTask(TS_PROJECT, [...BREAK_GREET, ...done(3)]);
    expect(report.status).toBe("verification_failed");
    const tsc = report.verification!.checks.find((c) => c.name === "tsc")!;
    expect(tsc.command).toMatch(/ts-morph/);
    expect(tsc.newly_failing.join("\n")).toMatch(/src\/use\.ts: error TS2554/);
  });
});

describe("Node scripts", () => {
  const LINT = `import fs from "node:fs";\nlet bad = 0;\nfor (const f of fs.readdirSync("src")) fs.readFileSync("src/" + f, "utf8").split("\\n").forEach((l, i) => {\n  if (l.startsWith("var ")) { bad++; console.log(\`src/\${f}:\${i + 1}:1  error  Unexpected var, use let or const  no-var\`); }\n});\nprocess.exit(bad ? 1 : 0);\n`;
  const files = {
    "package.json": JSON.stringify({ name: "l", type: "module", scripts: { lint: "node lint.mjs" } }),
    "lint.mjs": LINT,
    "src/old.js": "var legacy = 1;\nexport { legacy };\n",
  };

  test("a lint that already failed still catches a new violation; moved old ones stay pre-existing", async () => {
    const { model, report } = await runTask(files, [
      reply(use("Read", { file_path: "src/old.js" })),
      reply(
        use("Write", {
          file_path: "src/old.js",
          content: "// moved down a line\nvar legacy = 1;\nexport { legacy };\n",
        }),
        use("Write", { file_path: "src/new.js", content: "var fresh = 2;\nexport { fresh };\n" }),
      ),
      ...done(3),
    ]);
    expect(report.status).toBe("verification_failed");
    const lint = report.verification!.checks.find((c) => c.name === "lint")!;
    expect(lint.command).toBe("npm run lint");
    expect(lint.newly_failing).toEqual(["src/new.js: error Unexpected var, use let or const no-var"]);
    expect(lint.failed_before).toEqual(["src/old.js: error Unexpected var, use let or const no-var"]);
    const round = fixRounds(model)[0]!;
    expect(round).toContain("src/new.js");
    expect(round).not.toContain("src/old.js");
  });

  test("a clean change to a project whose lint already failed ends completed with the old failure listed", async () => {
    const { report, text: out } = await runTask(files, [
      reply(use("Write", { file_path: "src/ok.js", content: "export const ok = 1;\n" })),
      ...done(),
    ]);
    expect(report.status).toBe("completed");
    expect(out).toMatch(/lint: failed, but only as before the run/);
    expect(out).toContain("pre-existing");
  });
});

describe("what gets checked", () => {
  test("a docs-only change outside any project is unverified, not completed", async () => {
    const { report, text: out } = await runTask({ "README.md": "# notes\n" }, [
      reply(use("Write", { file_path: "docs/guide.md", content: "# Guide\n" })),
      ...done(),
    ]);
    expect(report.status).toBe("unverified");
    expect(report.verification!.outcome).toBe("unverified");
    expect(report.verification!.note).toMatch(/no changed file is in a project with a manifest/);
    expect(out).toContain("UNVERIFIED");
  });

  test("in a monorepo only the touched project is checked, in its own folder", async () => {
    const { report } = await runTask(
      {
        "services/api/package.json": JSON.stringify({ name: "api", type: "module", scripts: { test: "node --test" } }),
        "services/api/test/a.test.js": 'import { test } from "node:test";\ntest("api works", () => {});\n',
        "services/worker/go.mod": "module example.com/worker\n\ngo 1.19\n",
        "services/worker/w.go": "package worker\n",
      },
      [reply(use("Write", { file_path: "services/api/src/x.js", content: "export const x = 1;\n" })), ...done()],
    );
    expect(report.status).toBe("completed");
    expect(report.verification!.checks.map((c) => [c.project, c.name, c.result])).toEqual([
      ["services/api", "test", "passed"],
    ]);
  });

  test("a committed backend-agent.checks.json replaces detection", async () => {
    const config = { checks: [{ name: "smoke", command: "test -f ready.txt", parse: "exit-code" }] };
    const { report } = await runTask(
      {
        "backend-agent.checks.json": JSON.stringify(config),
        "package.json": JSON.stringify({ scripts: { test: "exit 1" } }),
      },
      [reply(use("Write", { file_path: "ready.txt", content: "yes\n" })), ...done()],
    );
    expect(report.status).toBe("completed");
    expect(report.verification!.checks.map((c) => [c.name, c.command, c.result])).toEqual([
      ["smoke", "test -f ready.txt", "passed"],
    ]);
  });

  test("--test-command replaces the root project's test check and keeps the others", async () => {
    const pkg = { name: "p", scripts: { test: "exit 1", lint: "node -e 0" } };
    const { report, model } = await runTask(
      { "package.json": JSON.stringify(pkg) },
      [reply(use("Write", { file_path: "ok.txt", content: "ok\n" })), ...done()],
      {
        args: ["--test-command", "test -f ok.txt"],
      },
    );
    expect(report.status).toBe("completed");
    expect(report.verification!.checks.map((c) => [c.name, c.command, c.result])).toEqual([
      ["lint", "npm run lint", "passed"],
      ["test", "test -f ok.txt", "passed"],
    ]);
    expect(model.requests[0]!.system![0]!.text).toContain("`test -f ok.txt`");
  });

  test("an invalid checks file makes the run unverified, saying what is wrong", async () => {
    const { report, model } = await runTask(
      { "backend-agent.checks.json": JSON.stringify({ checks: [{ name: "x" }] }) },
      [reply(use("Write", { file_path: "a.txt", content: "a\n" })), ...done()],
    );
    expect(report.status).toBe("unverified");
    expect(report.verification!.note).toMatch(/backend-agent\.checks\.json is invalid: checks\.0\.command/);
    expect(model.requests[0]!.system![0]!.text).toMatch(/check configuration is invalid/);
  });

  test("a missing toolchain is reported as not run with the reason, and the run is unverified", async () => {
    const pathWithoutCargo = (process.env.PATH ?? "")
      .split(path.delimiter)
      .filter((d) => !d.includes(".cargo"))
      .join(path.delimiter);
    const { report, text: out } = await runTask(
      { "Cargo.toml": '[package]\nname = "x"\nversion = "0.1.0"\nedition = "2021"\n', "src/lib.rs": "" },
      [reply(use("Write", { file_path: "src/more.rs", content: "pub fn f() {}\n" })), ...done()],
      { env: { PATH: pathWithoutCargo } },
    );
    expect(report.status).toBe("unverified");
    expect(report.verification!.checks.map((c) => [c.name, c.result, c.reason])).toEqual([
      ["cargo check", "not_run", "cargo: not installed"],
      ["cargo test", "not_run", "cargo: not installed"],
    ]);
    expect(out).toContain("NOT RUN (cargo: not installed)");
  });
});

test.skipIf(!process.env.PATH?.split(path.delimiter).some((d) => existsSync(path.join(d, "mvn"))))(
  "a Maven build that cannot resolve its plugins offline is not run (with the reason), not failed",
  async () => {
    const pom =
      '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion><groupId>x</groupId><artifactId>y</artifactId><version>1</version><build><plugins><plugin><groupId>org.example.absent</groupId><artifactId>absent-maven-plugin</artifactId><version>9.9.9</version></plugin></plugins></build></project>\n';
    const { report } = await runTask({ "pom.xml": pom }, [
      reply(use("Write", { file_path: "src/main/java/A.java", content: "class A {}\n" })),
      ...done(),
    ]);
    expect(report.status).toBe("unverified");
    expect(report.verification!.checks.map((c) => [c.name, c.result, c.reason])).toEqual([
      ["maven test", "not_run", expect.stringMatching(/^maven: .*local repository/)],
    ]);
  },
);

describe("the agent cannot change how it is judged", () => {
  test("rewriting backend-agent.checks.json during the run does not change the checks: the checkpoint's file is used", async () => {
    const config = { checks: [{ name: "smoke", command: "test ! -f broken.txt" }] };
    const { report } = await runTask({ "backend-agent.checks.json": JSON.stringify(config) }, [
      reply(use("Read", { file_path: "backend-agent.checks.json" })),
      reply(
        use("Write", {
          file_path: "backend-agent.checks.json",
          content: JSON.stringify({ checks: [{ name: "smoke", command: "true" }] }),
        }),
        use("Write", { file_path: "broken.txt", content: "x\n" }),
      ),
      ...done(3),
    ]);
    expect(report.status).toBe("verification_failed");
    expect(report.verification!.checks.map((c) => [c.name, c.command, c.result])).toEqual([
      ["smoke", "test ! -f broken.txt", "failed"],
    ]);
  });

  test("deleting the test script does not skip the tests: the check runs and fails", async () => {
    const pkg = { name: "p", scripts: { test: "node --test" } };
    const { report } = await runTask(
      { "package.json": JSON.stringify(pkg), "t.test.js": 'require("node:test")("ok", () => {});\n' },
      [
        reply(use("Read", { file_path: "package.json" })),
        reply(use("Write", { file_path: "package.json", content: JSON.stringify({ name: "p" }) })),
        ...done(3),
      ],
    );
    expect(report.status).toBe("verification_failed");
    expect(report.verification!.checks.map((c) => [c.name, c.result])).toEqual([["test", "failed"]]);
  });
});

test("the Python demo replay (npm run demo -- --stack python) ends completed, checked by pytest", async () => {
  const model = new ScriptedModel(pythonDemoSteps());
  const url = await model.start();
  const ws = await demoWorkspace("python");
  const conn = await connect(["--workspace", ws], { env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: url } });
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
    () => fs.rm(ws, { recursive: true, force: true }),
  );
  const report = (await conn.call("Task", { description: "demo", prompt: "Add list_users." }))
    .structuredContent as unknown as TaskReport;
  expect(report.status).toBe("completed");
  expect(report.verification!.checks.map((c) => [c.name, c.command, c.result])).toEqual([
    ["pytest", "python3 -m pytest", "passed"],
  ]);
});

describe("output parsing", () => {
  test("diagnostics lose their line and column, keep file, code and message", () => {
    expect(withoutPosition("src/a.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.")).toBe(
      "src/a.ts: error TS2322: Type 'string' is not assignable to type 'number'.",
    );
    expect(withoutPosition("./calc.go:3:27: undefined: x")).toBe("./calc.go: undefined: x");
    expect(withoutPosition("app.py:12: error: Incompatible return value  [return-value]")).toBe(
      "app.py: error: Incompatible return value [return-value]",
    );
    const eslint = parseDiagnostics(
      "/w/src/a.js\n  3:7  error  'x' is assigned a value but never used  no-unused-vars\n  9:1  error  'x' is assigned a value but never used  no-unused-vars\n\n✖ 2 problems\n",
    );
    expect([...eslint.failed.keys()]).toEqual([
      "/w/src/a.js: error 'x' is assigned a value but never used no-unused-vars",
      "/w/src/a.js: error 'x' is assigned a value but never used no-unused-vars (×2)",
    ]);
  });

  test("test names from TAP, node:test spec, vitest and jest output", () => {
    const tap = parseTestText("TAP version 13\n# Subtest: adds\nnot ok 1 - adds\n  ---\nok 2 - subtracts\n");
    expect([...tap.failed.keys()]).toEqual(["adds"]);
    expect([...tap.passed]).toEqual(["subtracts"]);
    const spec = parseTestText("✔ subtracts (0.5ms)\n✖ adds (1.2ms)\n  AssertionError\nℹ tests 2\n");
    expect([...spec.failed.keys()]).toEqual(["adds"]);
    const vitest = parseTestText(
      " ❯ test/a.test.ts (2 tests | 1 failed)\n   × adds 3ms\n   ✓ subtracts 1ms\n FAIL  test/a.test.ts > math > adds\n",
    );
    expect([...vitest.failed.keys()]).toEqual(["adds", "test/a.test.ts > math > adds"]);
  });
});
