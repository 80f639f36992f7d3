import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { packageRoot } from "../paths.js";
import { reply, say, ScriptedModel, use, type Step } from "./scripted-model.js";

/** The scripted model, for bench/task-turns.mjs (plain JS, which imports the built dist/demo.js). */
export { reply, say, ScriptedModel, use };

export const DEMO_TASK =
  "Add a paginated GET /users endpoint to a dependency-free Node HTTP service, with input validation and node:test tests.";
export const PYTHON_DEMO_TASK =
  "Add a validated, paginated list_users(page, limit) to a dependency-free Python service, with pytest tests.";
export type DemoStack = "node" | "python";

const USERS_JS = `import http from "node:http";

export const users = Array.from({ length: 45 }, (_, i) => ({ id: i + 1, name: \`user-\${i + 1}\` }));

/** Parses ?page=&limit= strictly: positive integers, limit at most 100. */
export function parsePaging(params) {
  const page = params.get("page") ?? "1";
  const limit = params.get("limit") ?? "20";
  if (!/^[1-9]\\d*$/.test(page)) return { error: "page must be a positive integer" };
  if (!/^[1-9]\\d*$/.test(limit) || Number(limit) > 100) return { error: "limit must be an integer from 1 to 100" };
  return { page: Number(page), limit: Number(limit) };
}

export function createServer() {
  return http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    const send = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.method !== "GET" || url.pathname !== "/users") return send(404, { error: { code: "not_found", message: "No such route" } });
    const paging = parsePaging(url.searchParams);
    if (paging.error) return send(400, { error: { code: "invalid_query", message: paging.error } });
    const start = (paging.page - 1) * paging.limit;
    send(200, { data: users.slice(start, start + paging.limit), meta: { page: paging.page, limit: paging.limit, total: users.length } });
  });
}
`;

const USERS_TEST_JS = `import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createServer, parsePaging } from "../src/users.js";

let server;
let base;
before(async () => {
  server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = \`http://127.0.0.1:\${server.address().port}\`;
});
after(() => server.close());

test("parsePaging rejects bad input", () => {
  assert.deepEqual(parsePaging(new URLSearchParams("page=0")), { error: "page must be a positive integer" });
  assert.ok(parsePaging(new URLSearchParams("limit=500")).error);
  assert.deepEqual(parsePaging(new URLSearchParams("")), { page: 1, limit: 20 });
});

test("GET /users pages through the list", async () => {
  const res = await fetch(\`\${base}/users?page=3&limit=20\`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.data.length, 5);
  assert.deepEqual(body.meta, { page: 3, limit: 20, total: 45 });
});

test("GET /users answers 400 on an invalid limit", async () => {
  const res = await fetch(\`\${base}/users?limit=abc\`);
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.code, "invalid_query");
});
`;

/** The replayed conversation: look around, write the endpoint and its tests, run them, report. */
export function demoSteps(): Step[] {
  return [
    reply(say("I'll look at the project first."), use("Glob", { pattern: "**/*" })),
    reply(use("Read", { file_path: "package.json" })),
    reply(
      say("An ESM project with `node --test`. I'll add the endpoint module and its tests."),
      use("Write", { file_path: "src/users.js", content: USERS_JS }),
      use("Write", { file_path: "test/users.test.js", content: USERS_TEST_JS }),
    ),
    reply(use("Run", { command: "npm test 2>&1 | tail -n 15", description: "Run the test suite" })),
    reply(
      say(
        "Added `GET /users` in `src/users.js`: strict `page`/`limit` validation (400 with an error envelope), pages of at most 100, and `meta` with the total. `test/users.test.js` covers validation and paging over real HTTP; `npm test` passes (3 tests).",
      ),
    ),
  ];
}

const PYPROJECT = `[project]
name = "demo-service"
version = "1.0.0"
requires-python = ">=3.9"

[tool.pytest.ini_options]
testpaths = ["tests"]
`;

const USERS_PY = `"""Users, listed a page at a time."""

USERS = [{"id": i, "name": f"user-{i}"} for i in range(1, 46)]


class InvalidPaging(ValueError):
    """A page or limit that is not a positive integer (limit at most 100)."""


def list_users(page=1, limit=20):
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise InvalidPaging("page must be a positive integer")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
        raise InvalidPaging("limit must be an integer from 1 to 100")
    start = (page - 1) * limit
    return {"data": USERS[start : start + limit], "meta": {"page": page, "limit": limit, "total": len(USERS)}}
`;

const TEST_USERS_PY = `import pytest

from users import InvalidPaging, list_users


def test_pages_through_the_list():
    body = list_users(page=3, limit=20)
    assert len(body["data"]) == 5
    assert body["meta"] == {"page": 3, "limit": 20, "total": 45}


@pytest.mark.parametrize("page, limit", [(0, 20), (1, 0), (1, 500), ("2", 20), (True, 20)])
def test_rejects_bad_paging(page, limit):
    with pytest.raises(InvalidPaging):
        list_users(page=page, limit=limit)
`;

/** The Python replay: the same shape of work, checked by the server with pytest. */
export function pythonDemoSteps(): Step[] {
  return [
    reply(say("I'll look at the project first."), use("Glob", { pattern: "**/*" })),
    reply(use("Read", { file_path: "pyproject.toml" })),
    reply(
      say("A plain Python project with pytest configured. I'll add the module and its tests."),
      use("Write", { file_path: "users.py", content: USERS_PY }),
      use("Write", { file_path: "tests/test_users.py", content: TEST_USERS_PY }),
    ),
    reply(use("Run", { command: "python3 -m pytest -q 2>&1 | tail -n 15", description: "Run the test suite" })),
    reply(
      say(
        "Added `list_users(page, limit)` in `users.py`: strict validation (`InvalidPaging` on anything but positive integers, limit at most 100) and `meta` with the total. `tests/test_users.py` covers paging and bad input; `python3 -m pytest` passes (6 tests).",
      ),
    ),
  ];
}

/** A fresh workspace: a minimal ESM package whose test script is node --test, or a pyproject with pytest configured. */
export async function demoWorkspace(stack: DemoStack = "node"): Promise<string> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "backend-agent-demo-")));
  if (stack === "python") {
    await fs.writeFile(path.join(dir, "pyproject.toml"), PYPROJECT);
    await fs.writeFile(path.join(dir, "README.md"), "# demo-service\nA tiny dependency-free Python service.\n");
    return dir;
  }
  await fs.writeFile(
    path.join(dir, "package.json"),
    `${JSON.stringify({ name: "demo-service", version: "1.0.0", type: "module", private: true, scripts: { test: "node --test" } }, null, 2)}\n`,
  );
  await fs.writeFile(path.join(dir, "README.md"), "# demo-service\nA tiny dependency-free HTTP service.\n");
  return dir;
}

const DEMO_HELP = `Usage: npm run demo -- [--stack node|python] [--keep] [--live ["<task>"]]

Runs one Task on a fresh temporary workspace and prints the server's report.
  (default)      REPLAY: a local stand-in for the Anthropic API replays a fixed conversation; no key needed
  --stack STACK  node (default: a REST endpoint with node:test) or python (a pytest-tested module)
  --live [TASK]  Use the real Anthropic API (needs ANTHROPIC_API_KEY); TASK defaults to the demo's task
  --keep         Keep the temporary workspace afterwards (it is removed otherwise) and print where it is
  -h, --help     Show this help`;

interface DemoArgs {
  live: boolean;
  keep: boolean;
  stack: DemoStack;
  /** The live task; the stack's demo task when absent. */
  task?: string;
}

/** The demo's own command line; throws with a usage message on anything it does not know. */
export function parseDemoArgs(argv: string[]): DemoArgs | "help" {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      live: { type: "boolean" },
      keep: { type: "boolean" },
      stack: { type: "string", default: "node" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) return "help";
  if (positionals.length && !values.live)
    throw new Error(`unexpected argument "${positionals[0]}" (a task is given with --live "<task>")`);
  const stack = values.stack;
  if (stack !== "node" && stack !== "python") throw new Error(`--stack takes node or python (got "${stack}")`);
  return { live: values.live ?? false, keep: values.keep ?? false, stack, task: positionals.join(" ") || undefined };
}

/** TAP and runner bookkeeping (durations, plan lines, YAML markers) that says nothing to a person watching. */
const RUNNER_NOISE =
  /^(# (duration_ms|tests|suites|pass|fail|cancelled|skipped|todo)\b|\s*duration_ms:|\s*type: '|TAP version|1\.\.\d+$|\s*(---|\.\.\.)$)/;

/** The part of a progress message worth showing, or undefined to skip it. */
export function meaningfulProgress(message: string): string | undefined {
  const latest = message.split(" · ").at(-1) ?? message;
  return RUNNER_NOISE.test(latest) ? undefined : message;
}

async function main(): Promise<void> {
  let args: DemoArgs | "help";
  try {
    args = parseDemoArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`demo: ${(e as Error).message}\n\n${DEMO_HELP}\n`);
    process.exit(2);
  }
  if (args === "help") return void console.log(DEMO_HELP);
  const { live, keep, stack } = args;
  const task = args.task ?? (stack === "python" ? PYTHON_DEMO_TASK : DEMO_TASK);
  if (live && !process.env.ANTHROPIC_API_KEY) throw new Error("--live needs ANTHROPIC_API_KEY in the environment.");
  const workspace = await demoWorkspace(stack);
  const model = live ? undefined : new ScriptedModel(stack === "python" ? pythonDemoSteps() : demoSteps());
  try {
    const env: Record<string, string> = { ...(process.env as Record<string, string>) };
    if (model) Object.assign(env, { ANTHROPIC_API_KEY: "replay", ANTHROPIC_BASE_URL: await model.start() });
    console.log(
      live
        ? `LIVE run against the Anthropic API in ${workspace}`
        : `REPLAY: a scripted model replays a fixed conversation (no live model, no API key needed).\nWorkspace: ${workspace}`,
    );
    console.log(`Task: ${task}\n`);
    const client = new Client({ name: "backend-developer-demo", version: "1.0.0" });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [path.join(packageRoot, "dist", "cli.js"), "--workspace", workspace],
        env,
        stderr: "inherit",
      }),
    );
    let shown = "";
    const result = (await client.callTool(
      {
        name: "Task",
        arguments: {
          description: stack === "python" ? "Paginated users listing" : "Paginated users endpoint",
          prompt: task,
        },
      },
      undefined,
      {
        onprogress: (p) => {
          const line = meaningfulProgress(p.message ?? "");
          if (line && line !== shown) console.log(`  … ${(shown = line)}`);
        },
        resetTimeoutOnProgress: true,
        timeout: 30 * 60_000,
      },
    )) as CallToolResult;
    console.log(`\n${result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n")}`);
    await client.close();
    process.exitCode = result.isError ? 1 : 0;
  } finally {
    await model?.stop();
    if (keep) console.log(`\nThe workspace is kept: ${workspace}`);
    else await fs.rm(workspace, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((e) => {
    console.error((e as Error).message);
    process.exit(1);
  });
}
