// Bundles the CLI and the demo into dist/ so start-up reads a few files instead of hundreds.
// Heavy dependencies that only some calls need stay external and load on first use.
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { build } from "esbuild";

await rm("dist", { recursive: true, force: true });

/** prompts/commands/*.md parsed now by src/prompts.ts itself, so start-up needs no YAML parser (see readCommandFiles). */
async function parsedCommands() {
  const outfile = "dist/parse-commands.mjs";
  await build({
    entryPoints: ["src/prompts.ts"],
    outfile,
    bundle: true,
    format: "esm",
    platform: "node",
    packages: "external",
    logLevel: "warning",
  });
  const { readCommandFiles } = await import(pathToFileURL(path.resolve(outfile)).href);
  await rm(outfile);
  const commands = await readCommandFiles();
  const json = JSON.stringify(commands);
  if (!isDeepStrictEqual(JSON.parse(json), commands))
    throw new Error("prompts/commands: front matter that JSON cannot hold");
  return JSON.stringify(json); // a string literal where it is used (a JSON object would be a module of its own)
}

/**
 * zod re-exports all its ~50 locales (z.locales.*) and the bundle cannot leave them out; nothing here uses them
 * (messages are English), so its locale index is built as English only: a third less code to load at start.
 */
const englishZod = {
  name: "english-zod",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]v4[\\/]/.test(args.importer)
        ? { path: path.join(path.dirname(args.importer), "..", "locales", "en.js"), namespace: "english-zod" }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "english-zod" }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)};`,
      resolveDir: path.dirname(args.path),
    }));
  },
};

/**
 * The MCP SDK's server module imports its Ajv validator, and so evaluates Ajv and ajv-formats, at start; only
 * elicitation uses it (src/server/server.ts builds it on first use). The provider is built with require() calls where
 * it constructs them, which the bundle evaluates then. Fails the build when the SDK's file changes shape.
 */
const lazyAjv = {
  name: "lazy-ajv",
  setup(b) {
    b.onLoad(
      { filter: /[\\/]@modelcontextprotocol[\\/]sdk[\\/]dist[\\/]esm[\\/]validation[\\/]ajv-provider\.js$/ },
      async (args) => {
        let contents = await readFile(args.path, "utf8");
        for (const [from, to] of [
          ["import Ajv from 'ajv';\n", ""],
          ["import _addFormats from 'ajv-formats';\n", ""],
          ["new Ajv(", "new (require('ajv').default)("],
          ["const addFormats = _addFormats;", "const addFormats = require('ajv-formats').default;"],
        ]) {
          if (!contents.includes(from)) throw new Error(`lazy-ajv: ${args.path} no longer has ${JSON.stringify(from)}`);
          contents = contents.replace(from, to);
        }
        return { contents, loader: "js" };
      },
    );
  },
};

await build({
  entryPoints: { cli: "src/cli.ts", demo: "src/testing/demo.ts", "ts-check": "src/task/verify/ts-check.ts" },
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: true,
  minify: true,
  external: [
    "@vscode/ripgrep",
    "@anthropic-ai/sandbox-runtime",
    "@anthropic-ai/sdk",
    "@anthropic-ai/bedrock-sdk",
    "@anthropic-ai/vertex-sdk",
    "ts-morph",
  ],
  plugins: [englishZod, lazyAjv],
  define: { __PARSED_COMMANDS__: await parsedCommands() },
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
});
