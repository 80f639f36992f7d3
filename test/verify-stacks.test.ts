import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import { reply, say, ScriptedModel, use, type MessagesRequest, type Step } from "../src/testing/scripted-model.js";
import type { TaskReport } from "../src/task/runs.js";
import { connect, tempDir, text } from "./helpers.js";

/** Each stack with its real toolchain: a run that breaks a test, a correct run, and a failure that was already there. */

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});

type Files = Record<string, string>;

/** Verification's own cost over the checks' commands (timed inside the sandbox), per correct run. */
const overhead: { stack: string; checks_ms: number; verification_ms: number }[] = [];
afterAll(() => {
  for (const o of overhead)
    process.stderr.write(
      `verification overhead ${o.stack}: checks ${o.checks_ms} ms, verification ${o.verification_ms} ms, +${o.verification_ms - o.checks_ms} ms (${(((o.verification_ms - o.checks_ms) / o.checks_ms) * 100).toFixed(1)}%)\n`,
    );
});

async function workspace(files: Files): Promise<string> {
  const ws = await tempDir("bdm-verify-");
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(ws, name)), { recursive: true });
    await fs.writeFile(path.join(ws, name), content);
  }
  return ws;
}

async function runTask(files: Files, steps: Step[], extraArgs: string[] = []) {
  const model = new ScriptedModel(steps);
  const url = await model.start();
  const ws = await workspace(files);
  const conn = await connect(["--workspace", ws, ...extraArgs], {
    env: { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: url },
  });
  cleanup.push(
    () => model.stop(),
    () => conn.close(),
    () => fs.rm(ws, { recursive: true, force: true }),
  );
  const result = await conn.call("Task", { description: "stack test", prompt: "Do the task." });
  return { model, ws, result, report: result.structuredContent as unknown as TaskReport, text: text(result) };
}

/** Everything the model was sent after its first turn: tool results and the server's fix-round messages. */
const sentToModel = (model: ScriptedModel) =>
  JSON.stringify(model.requests.slice(1).map((r: MessagesRequest) => r.messages.at(-1)));
const fixRounds = (model: ScriptedModel) =>
  model.requests
    .map((r) => JSON.stringify(r.messages.at(-1)?.content))
    .filter((c) => c.includes("The server ran its own checks"));
const listFiles = async (dir: string) =>
  (await fs.readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter((f) => !f.startsWith(".git/") && !f.startsWith(".backend-agent/"))
    .sort();
const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
const claims = (n: number) => Array.from({ length: n }, () => reply(say("Done: all tests pass.")));

interface Stack {
  name: string;
  available: boolean;
  why: string;
  files: Files;
  /** The check that runs the tests, by name. */
  testCheck: string;
  /** Edits that break the test "adds" (the file is read first, as Write and Edit require). */
  breakIt: Step[];
  /** A correct change. */
  goodChange: Step;
  /** A test file that already fails before the run, and its failing test's name (as a substring of its key). */
  oldFailure: [file: string, content: string, name: string];
}

const STACKS: Stack[] = [
  {
    name: "Node (node:test)",
    available: true,
    why: "",
    files: {
      "package.json": JSON.stringify({ name: "n", type: "module", scripts: { test: "node --test" } }),
      "src/add.js": "export const add = (a, b) => a + b;\n",
      "test/add.test.js": `import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { add } from "../src/add.js";\ntest("adds", () => assert.equal(add(1, 2), 3));\n`,
    },
    testCheck: "test",
    breakIt: [
      reply(use("Read", { file_path: "src/add.js" })),
      reply(use("Write", { file_path: "src/add.js", content: "export const add = (a, b) => a - b;\n" })),
    ],
    goodChange: reply(use("Write", { file_path: "src/mul.js", content: "export const mul = (a, b) => a * b;\n" })),
    oldFailure: [
      "test/old.test.js",
      `import { test } from "node:test";\nimport assert from "node:assert/strict";\ntest("legacy rounding", () => assert.equal(0.1 + 0.2, 0.3));\n`,
      "legacy rounding",
    ],
  },
  {
    name: "Python (pytest)",
    available: has("python3", ["-c", "import pytest"]),
    why: "python3 with pytest is not installed",
    files: {
      "pyproject.toml": `[project]\nname = "calc"\nversion = "0.1.0"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n`,
      "calc.py": "def add(a, b):\n    return a + b\n",
      "tests/test_calc.py": "from calc import add\n\n\ndef test_adds():\n    assert add(1, 2) == 3\n",
    },
    testCheck: "pytest",
    breakIt: [
      reply(use("Read", { file_path: "calc.py" })),
      reply(use("Write", { file_path: "calc.py", content: "def add(a, b):\n    return a - b\n" })),
    ],
    goodChange: reply(use("Write", { file_path: "mul.py", content: "def mul(a, b):\n    return a * b\n" })),
    oldFailure: [
      "tests/test_old.py",
      "def test_legacy_rounding():\n    assert 0.1 + 0.2 == 0.3\n",
      "test_legacy_rounding",
    ],
  },
  {
    name: "Go",
    available: has("go", ["version"]),
    why: "go is not installed",
    files: {
      "go.mod": "module example.com/calc\n\ngo 1.19\n",
      "calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b }\n",
      "calc_test.go": `package calc\n\nimport "testing"\n\nfunc TestAdds(t *testing.T) {\n\tif Add(1, 2) != 3 {\n\t\tt.Fatal("Add(1, 2) != 3")\n\t}\n}\n`,
    },
    testCheck: "go test",
    breakIt: [
      reply(use("Read", { file_path: "calc.go" })),
      reply(
        use("Write", { file_path: "calc.go", content: "package calc\n\nfunc Add(a, b int) int { return a - b }\n" }),
      ),
    ],
    goodChange: reply(
      use("Write", { file_path: "mul.go", content: "package calc\n\nfunc Mul(a, b int) int { return a * b }\n" }),
    ),
    oldFailure: [
      "old_test.go",
      `package calc\n\nimport "testing"\n\nfunc TestLegacyRounding(t *testing.T) {\n\tt.Fatal("legacy rounding is off")\n}\n`,
      "TestLegacyRounding",
    ],
  },
  {
    name: "Rust (cargo)",
    available: has("cargo", ["--version"]),
    why: "cargo is not installed",
    files: {
      "Cargo.toml": `[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n`,
      "src/lib.rs":
        "pub fn add(a: i32, b: i32) -> i32 { a + b }\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() { assert_eq!(super::add(1, 2), 3); }\n}\n",
    },
    testCheck: "cargo test",
    breakIt: [
      reply(use("Read", { file_path: "src/lib.rs" })),
      reply(use("Edit", { file_path: "src/lib.rs", old_string: "{ a + b }", new_string: "{ a - b }" })),
    ],
    goodChange: reply(
      use("Write", { file_path: "src/mul.rs", content: "pub fn mul(a: i32, b: i32) -> i32 { a * b }\n" }),
    ),
    oldFailure: ["tests/old.rs", "#[test]\nfn legacy_rounding() { assert_eq!(0.1 + 0.2, 0.3); }\n", "legacy_rounding"],
  },
];

const M2 = path.join(os.homedir(), ".m2", "repository");
const POM = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId><artifactId>calc</artifactId><version>0.1.0</version>
  <properties><maven.compiler.source>17</maven.compiler.source><maven.compiler.target>17</maven.compiler.target></properties>
  <dependencies><dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13.2</version><scope>test</scope></dependency></dependencies>
</project>
`;
/** Whether `mvn -o test` can build the fixture at all (checks run offline, so the local repository must hold everything). */
function mavenWorksOffline(): boolean {
  if (!existsSync(M2) || !has("mvn", ["-v"])) return false;
  const dir = mkdtempSync(path.join(os.tmpdir(), "bdm-mvn-probe-"));
  try {
    writeFileSync(path.join(dir, "pom.xml"), POM);
    return spawnSync("mvn", ["-o", "-q", "-B", "test"], { cwd: dir, stdio: "ignore", timeout: 120_000 }).status === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const junitTest = (cls: string, name: string, body: string) =>
  `package calc;\n\nimport static org.junit.Assert.*;\nimport org.junit.Test;\n\npublic class ${cls} {\n  @Test public void ${name}() { ${body} }\n}\n`;
STACKS.push({
  name: "Java (Maven)",
  available: mavenWorksOffline(),
  why: "Maven cannot build a JUnit project offline here (its plugins or junit 4.13.2 are not in ~/.m2)",
  files: {
    "pom.xml": POM,
    "src/main/java/calc/Calc.java":
      "package calc;\n\npublic class Calc {\n  public static int add(int a, int b) { return a + b; }\n}\n",
    "src/test/java/calc/CalcTest.java": junitTest("CalcTest", "adds", "assertEquals(3, Calc.add(1, 2));"),
  },
  testCheck: "maven test",
  breakIt: [
    reply(use("Read", { file_path: "src/main/java/calc/Calc.java" })),
    reply(use("Edit", { file_path: "src/main/java/calc/Calc.java", old_string: "a + b", new_string: "a - b" })),
  ],
  goodChange: reply(
    use("Write", {
      file_path: "src/main/java/calc/Mul.java",
      content: "package calc;\n\npublic class Mul {\n  public static int mul(int a, int b) { return a * b; }\n}\n",
    }),
  ),
  oldFailure: [
    "src/test/java/calc/OldTest.java",
    junitTest("OldTest", "legacyRounding", "assertEquals(0.3, 0.1 + 0.2, 0.0);"),
    "legacyRounding",
  ],
});

describe.each(STACKS)("$name", (stack) => {
  if (!stack.available) test.skip(`skipped: ${stack.why}`, () => undefined);

  test.skipIf(!stack.available)("a run that breaks a test ends verification_failed and the model is told", async () => {
    const { model, report, text: out } = await runTask(stack.files, [...stack.breakIt, ...claims(3)]);
    expect(report.status).toBe("verification_failed");
    const check = report.verification!.checks.find((c) => c.name === stack.testCheck)!;
    expect(check.result).toBe("failed");
    expect(check.newly_failing.join(" ")).toMatch(/adds/i);
    expect(check.failed_before).toEqual([]);
    const rounds = fixRounds(model);
    expect(rounds).toHaveLength(2);
    expect(rounds[0]).toMatch(/adds/i);
    expect(rounds[0]).toContain(check.command);
    expect(out).toContain("broken by this run");
  });

  test.skipIf(!stack.available)("a correct run ends completed, naming the check", async () => {
    const { model, report, text: out } = await runTask(stack.files, [stack.goodChange, ...claims(1)]);
    expect(report.status).toBe("completed");
    const check = report.verification!.checks.find((c) => c.name === stack.testCheck)!;
    expect(check).toMatchObject({ result: "passed", project: ".", newly_failing: [] });
    expect(check.duration_ms).toBeGreaterThan(0);
    expect(out).toContain(`${stack.testCheck}: passed`);
    const v = report.verification!;
    overhead.push({
      stack: stack.name,
      checks_ms: v.checks.reduce((n, c) => n + c.duration_ms, 0),
      verification_ms: v.duration_ms,
    });
    expect(out).toContain(check.command);
    // The agent was told which checks the server would run.
    expect(model.requests[0]!.system![0]!.text).toContain(check.command);
  });

  test.skipIf(!stack.available)(
    "a failure that was already there is kept apart: not sent to the model, the run completed",
    async () => {
      const [file, content, name] = stack.oldFailure;
      const {
        model,
        ws,
        report,
        text: out,
      } = await runTask({ ...stack.files, [file]: content }, [stack.goodChange, ...claims(1)]);
      expect(report.status).toBe("completed");
      const check = report.verification!.checks.find((c) => c.name === stack.testCheck)!;
      expect(check.result).toBe("failed");
      expect(check.newly_failing).toEqual([]);
      expect(check.failed_before.join(" ")).toContain(name);
      expect(fixRounds(model)).toEqual([]);
      expect(sentToModel(model)).not.toContain(name);
      expect(out).toContain("pre-existing");
      // The baseline ran in a copy of the checkpoint: nothing new in the workspace but the change (and Cargo's lock file, written by the check itself).
      const added = (await listFiles(ws)).filter((f) => !(f in stack.files) && f !== file && f !== "Cargo.lock");
      expect(added).toEqual(report.files_changed.map((f) => f.path).filter((f) => f !== "Cargo.lock"));
    },
  );

  test.skipIf(!stack.available)(
    "breaking a test next to one that already failed: only the new failure is sent to the model",
    async () => {
      const [file, content, name] = stack.oldFailure;
      const { model, report } = await runTask({ ...stack.files, [file]: content }, [...stack.breakIt, ...claims(3)]);
      expect(report.status).toBe("verification_failed");
      const check = report.verification!.checks.find((c) => c.name === stack.testCheck)!;
      expect(check.newly_failing.join(" ")).toMatch(/adds/i);
      expect(check.failed_before.join(" ")).toContain(name);
      const rounds = fixRounds(model);
      expect(rounds).toHaveLength(2);
      for (const round of rounds) expect(round).not.toContain(name);
      expect(sentToModel(model)).not.toContain(name);
    },
  );
});
