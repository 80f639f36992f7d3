import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, test } from "vitest";
import type { TaskReport } from "../src/task/runs.js";
import { reply, say, ScriptedModel, use } from "../src/testing/scripted-model.js";
import { CLI, connect, fail, ok, processAlive, tempDir, text, waitUntil, type Connection } from "./helpers.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});

const has = (cmd: string) =>
  spawnSync("bash", ["-c", `command -v ${cmd} || ls /usr/lib/postgresql/*/bin/${cmd}`], { stdio: "ignore" }).status ===
  0;
const hasServices = has("initdb") && has("redis-server") && has("psql") && has("redis-cli");
const hasSandbox = spawnSync("bash", ["-c", "command -v bwrap && command -v socat"]).status === 0;
/** The folder the server keeps a workspace's service data in. */
const dataDir = (ws: string) =>
  path.join(
    os.tmpdir(),
    `backend-developer-mcp-services-${process.getuid!()}`,
    createHash("sha256").update(ws).digest("hex").slice(0, 16),
  );

async function server(
  args: string[],
  env: Record<string, string> = {},
  ws?: string,
): Promise<{ ws: string; c: Connection }> {
  const dir = ws ?? (await tempDir());
  const c = await connect(["--workspace", dir, ...args], { env });
  if (!ws)
    cleanup.push(
      () => fs.rm(dir, { recursive: true, force: true }),
      () => fs.rm(dataDir(dir), { recursive: true, force: true }),
    );
  cleanup.push(() => c.close());
  return { ws: dir, c };
}

const output = (r: CallToolResult) => (r.structuredContent as { output: string }).output;

describe.runIf(hasServices)("services", () => {
  test.runIf(hasSandbox)(
    "PostgreSQL and Redis, started by the server, used by sandboxed commands; data kept until --service-reset",
    async () => {
      const { ws, c } = await server(["--sandbox", "os", "--service", "postgres", "--service", "redis"]);
      const env = output(
        await c.call("Run", { command: "env | grep -E '^(DATABASE_URL|PG[A-Z]+|REDIS_URL)=' | sed 's/=.*//' | sort" }),
      );
      expect(env.trim().split("\n")).toEqual([
        "DATABASE_URL",
        "PGDATABASE",
        "PGHOST",
        "PGPASSWORD",
        "PGPORT",
        "PGUSER",
        "REDIS_URL",
      ]);
      const r = await c.call("Run", {
        command: `psql "$DATABASE_URL" -tA -c 'select 1' && redis-cli --no-auth-warning -u "$REDIS_URL" ping`,
      });
      expect((r.structuredContent as { exit_code: number }).exit_code).toBe(0);
      expect(output(r)).toBe("1\nPONG\n");
      // Reachable on the workspace's loopback only: the host's 127.0.0.1 has no such server.
      expect(
        output(
          await c.call("Run", { command: `cat /proc/net/tcp | awk '$4=="0A" {print $2}' | grep -c ':1538\\|:18EB'` }),
        ).trim(),
      ).toBe("2");
      ok(
        await c.call("Run", {
          command: `psql "$DATABASE_URL" -c 'create table notes (body text)' && psql -c "insert into notes values ('kept')"`,
        }),
      );
      const pgMarker = path.join(dataDir(ws), "postgres", "data");
      expect(processAlive(pgMarker)).toBe(true);
      await c.close();
      expect(await waitUntil(() => !processAlive(pgMarker), 15_000)).toBe(true);

      const again = await server(["--sandbox", "os", "--service", "postgres"], {}, ws);
      expect(output(await again.c.call("Run", { command: `psql -tA -c 'select body from notes'` }))).toBe("kept\n");
      await again.c.close();
      expect(await waitUntil(() => !processAlive(pgMarker), 15_000)).toBe(true);

      const reset = await server(["--sandbox", "os", "--service", "postgres", "--service-reset"], {}, ws);
      expect(
        output(
          await reset.c.call("Run", {
            command: `psql -tA -c "select count(*) from pg_tables where tablename = 'notes'"`,
          }),
        ),
      ).toBe("0\n");
    },
  );

  // Services run outside bubblewrap: what commands can make them do must stay inside the database.
  test.runIf(hasSandbox)("commands cannot make a service run programs or touch files outside the sandbox", async () => {
    const { ws, c } = await server(["--sandbox", "os", "--service", "postgres", "--service", "redis"]);
    const escaped = path.join(os.tmpdir(), `escaped-${process.pid}-${Date.now()}`);
    cleanup.push(() => fs.rm(escaped, { force: true }));
    const attacks = [
      `psql -v ON_ERROR_STOP=1 -c "COPY (select 1) TO PROGRAM 'touch ${escaped}'"`,
      `psql -v ON_ERROR_STOP=1 -c "select pg_read_file('/etc/hostname')"`,
      `psql -v ON_ERROR_STOP=1 -c "COPY (select 'x') TO '${escaped}'"`,
      `psql -v ON_ERROR_STOP=1 -c "ALTER ROLE app SUPERUSER"`,
      `redis-cli --no-auth-warning -u "$REDIS_URL" CONFIG SET dir ${os.tmpdir()} | grep -q ERR && exit 1; exit 0`,
      `redis-cli --no-auth-warning -u "$REDIS_URL" MODULE LOAD ${ws}/evil.so | grep -q ERR && exit 1; exit 0`,
      `redis-cli --no-auth-warning -u "$REDIS_URL" REPLICAOF 127.0.0.1 9 | grep -q ERR && exit 1; exit 0`,
    ];
    for (const command of attacks) {
      const r = await c.call("Run", { command });
      expect((r.structuredContent as { exit_code: number }).exit_code, `${command}\n${output(r)}`).not.toBe(0);
    }
    expect(await fs.stat(escaped).catch(() => undefined)).toBeUndefined();
    // What applications need still works: their own tables, and flushing their own cache.
    const ok2 = await c.call("Run", {
      command: `psql -v ON_ERROR_STOP=1 -tA -c 'create table t (id int); insert into t values (1); select count(*) from t' && redis-cli --no-auth-warning -u "$REDIS_URL" FLUSHALL`,
    });
    expect(output(ok2)).toBe("CREATE TABLE\nINSERT 0 1\n1\nOK\n");
  });

  test("without the OS sandbox, services listen on a free port of the host's loopback", async () => {
    const { c } = await server(["--sandbox", "off", "--service", "redis"]);
    const r = output(
      await c.call("Run", { command: `echo "$REDIS_URL"; redis-cli --no-auth-warning -u "$REDIS_URL" ping` }),
    );
    expect(r).toMatch(/^redis:\/\/default:[0-9a-f]{32}@127\.0\.0\.1:\d+\/0\nPONG\n$/);
  });

  test("a port in use is an error with the service's log tail; the server keeps serving", async () => {
    const holder = net.createServer();
    holder.on("error", () => undefined);
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise((r) => holder.close(r)));
    const port = (holder.address() as net.AddressInfo).port;
    const { c } = await server(["--sandbox", "off", "--service", `redis:${port}`]);
    const message = fail(await c.call("Run", { command: "true" }));
    expect(message).toMatch(
      new RegExp(
        `--service redis failed to start on 127.0.0.1:${port}.*Its log ends:.*(Address already in use|bind)`,
        "s",
      ),
    );
    expect(ok(await c.call("Glob", { pattern: "*" }))).toBeDefined();
  });

  test("a missing binary names the package to install", async () => {
    const bin = await tempDir("bin-");
    cleanup.push(() => fs.rm(bin, { recursive: true, force: true }));
    for (const tool of ["bash", "setpriv"])
      await fs.symlink(
        spawnSync("bash", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim(),
        path.join(bin, tool),
      );
    const { c } = await server(["--sandbox", "off", "--service", "redis"], { PATH: bin });
    expect(fail(await c.call("Run", { command: "true" }))).toContain(
      "redis-server was not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server)",
    );
  });

  test("unknown service names and bad ports stop the server at start with a usage error", () => {
    for (const [arg, message] of [
      ["mysql", 'unknown service "mysql" (known: postgres, redis)'],
      ["redis:99999", '"redis:99999" is not NAME:PORT'],
    ]) {
      const r = spawnSync(process.execPath, [CLI, "--service", arg!], { encoding: "utf8", input: "" });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });

  test.runIf(hasSandbox)("the server's verification runs a node integration test against both services", async () => {
    const integration = [
      `import { test } from "node:test";`,
      `import assert from "node:assert/strict";`,
      `import { execFileSync } from "node:child_process";`,
      `import net from "node:net";`,
      `test("postgres answers", () => {`,
      `  assert.equal(execFileSync("psql", [process.env.DATABASE_URL, "-tA", "-c", "select 40 + 2"], { encoding: "utf8" }).trim(), "42");`,
      `});`,
      `test("redis answers", async () => {`,
      `  const url = new URL(process.env.REDIS_URL);`,
      `  const reply = await new Promise((resolve, reject) => {`,
      `    const socket = net.connect(Number(url.port), url.hostname, () => socket.write(\`AUTH \${url.password}\\r\\nPING\\r\\n\`));`,
      `    let data = "";`,
      `    socket.on("data", (d) => { data += d; if (data.includes("PONG")) { socket.end(); resolve(data); } });`,
      `    socket.on("error", reject);`,
      `  });`,
      `  assert.match(reply, /\\+OK\\r\\n\\+PONG/);`,
      `});`,
    ].join("\n");
    const model = new ScriptedModel([
      reply(use("Write", { file_path: "test/integration.test.mjs", content: integration })),
      reply(say("Added the integration test.")),
    ]);
    const url = await model.start();
    cleanup.push(() => model.stop());
    const ws = await tempDir();
    cleanup.push(
      () => fs.rm(ws, { recursive: true, force: true }),
      () => fs.rm(dataDir(ws), { recursive: true, force: true }),
    );
    await fs.writeFile(
      path.join(ws, "package.json"),
      JSON.stringify({ name: "svc", private: true, scripts: { test: "node --test test/" } }),
    );
    const { c } = await server(
      ["--sandbox", "os", "--service", "postgres", "--service", "redis"],
      { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: url },
      ws,
    );
    const r = await c.call("Task", { description: "integration test", prompt: "Add an integration test." });
    const report = r.structuredContent as unknown as TaskReport;
    expect(report.status, text(r)).toBe("completed");
    expect(report.verification?.checks).toEqual([
      expect.objectContaining({ name: "test", command: "npm test", project: ".", result: "passed", newly_failing: [] }),
    ]);
  });
});
