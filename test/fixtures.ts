// The fixture of the Task test files: servers driven by a scripted Messages API over real HTTP, each with its state
// folder in a temp folder of the test file, all stopped and removed after each test.
import { mkdtempSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterEach } from "vitest";
import { stateDirFor } from "../src/task/store.js";
import { demoWorkspace } from "../src/testing/demo.js";
import { ScriptedModel, type Step } from "../src/testing/scripted-model.js";
import { type Connection, connect } from "./helpers.js";

export interface ScriptedServers {
  /** The state folder of a workspace served by this file's servers. */
  stateDir(ws: string): string;
  /** A server on ws whose Task model is the scripted one. */
  serve(ws: string, model: ScriptedModel, args?: string[], client?: Client): Promise<Connection>;
  /** Runs fn after the current test (closing a connection the test made itself). */
  after(fn: () => Promise<unknown>): void;
  /** A scripted model with steps, a workspace (the demo's unless given; removed afterwards) and a server on it. */
  start(steps: Step[], o?: { ws?: string; args?: string[]; client?: Client }): Promise<StartedServer>;
}

export interface StartedServer {
  model: ScriptedModel;
  ws: string;
  conn: Connection;
}

/** Call once per test file: registers the clean-up after each test. env: more variables for every server. */
export function useScriptedServers(env: Record<string, string> = {}): ScriptedServers {
  const stateHome = mkdtempSync(path.join(os.tmpdir(), "bdm-state-"));
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
  });
  const serve: ScriptedServers["serve"] = async (ws, model, args = [], client) => {
    const vars = { ANTHROPIC_API_KEY: "test-key", ANTHROPIC_BASE_URL: await model.start(), XDG_STATE_HOME: stateHome };
    const conn = await connect(["--workspace", ws, ...args], { env: { ...vars, ...env }, client });
    cleanup.push(() => conn.close());
    return conn;
  };
  return {
    stateDir: (ws) => stateDirFor(ws, { XDG_STATE_HOME: stateHome }),
    after: (fn) => void cleanup.push(fn),
    serve,
    async start(steps, o = {}) {
      const model = new ScriptedModel(steps);
      const ws = o.ws ?? (await demoWorkspace());
      cleanup.push(
        () => model.stop(),
        () => fs.rm(ws, { recursive: true, force: true }),
      );
      return { model, ws, conn: await serve(ws, model, o.args, o.client) };
    },
  };
}
