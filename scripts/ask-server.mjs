// Starts a built server (dist/cli.js) on a throwaway workspace, connects an MCP client, and hands it to `ask`:
// the one way the generator scripts (docs, plugin, bundle) learn the server's tools and prompts.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

export async function askServer(cli, ask) {
  await fs.access(cli).catch(() => {
    throw new Error(`${cli} is missing: run npm run build first`);
  });
  const ws = await fs.mkdtemp(path.join(os.tmpdir(), "bdm-script-"));
  const client = new Client({ name: "backend-developer-scripts", version: "1" });
  try {
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [cli, "--workspace", ws, "--sandbox", "off"],
        stderr: "ignore",
      }),
    );
    return await ask(client);
  } finally {
    await client.close().catch(() => undefined);
    await fs.rm(ws, { recursive: true, force: true });
  }
}
