// Whole-program TypeScript diagnostics with ts-morph, for a workspace that has no typescript of its own. Run by
// verification as a command in the sandbox (never in the server's process: a hostile tsconfig.json can name any
// files, or be a FIFO), it prints one line per diagnostic in tsc's format: file(line,col): error TSnnnn: message.
import path from "node:path";
import { Project } from "ts-morph";

const config = path.resolve(process.argv[2] ?? "tsconfig.json");
const dir = path.dirname(config);
const project = new Project({ tsConfigFilePath: config });
const diagnostics = project.getPreEmitDiagnostics();
for (const d of diagnostics) {
  const text = d.getMessageText();
  const message = (typeof text === "string" ? text : text.getMessageText()).split("\n")[0];
  const file = d.getSourceFile()?.getFilePath();
  process.stdout.write(
    `${file ? path.relative(dir, file) : "(project)"}(${d.getLineNumber() ?? 0},0): error TS${d.getCode()}: ${message}\n`,
  );
}
process.exitCode = diagnostics.length ? 1 : 0;
