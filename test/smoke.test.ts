import { test } from "vitest";
import { connect, text } from "./helpers.js";
test("smoke", async () => {
  const c = await connect(["--workspace", "/tmp/ws1"]);
  const tools = await c.client.listTools();
  console.log(JSON.stringify(tools.tools.map(t=>[t.name, Object.keys(t.inputSchema.properties ?? {})])));
  for (const [n,a] of [["Read",{file_path:"src/a.txt"}],["Edit",{file_path:"src/a.txt",old_string:"hello world\nline3",new_string:"bye\nworld"}],["Read",{file_path:"src/a.txt"}],["Grep",{pattern:"x",output_mode:"content"}],["Glob",{pattern:"**/*.ts"}],["Read",{file_path:"../etc/passwd"}],["Read",{file_path:5}],["Edit",{file_path:"src/a.txt",old_string:"wrld",new_string:"q"}], ["Read",{file_path:"src"}]]) {
    const r = await c.call(n, a); console.log(n, r.isError, text(r), JSON.stringify(r.structuredContent));
  }
  console.log(c.stderr());
  await c.close();
});
