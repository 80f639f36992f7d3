// Bundles the CLI and the demo into dist/ so start-up reads a few files instead of hundreds.
// Heavy dependencies that only some calls need stay external and load on first use.
import { rm } from "node:fs/promises";
import { build } from "esbuild";

await rm("dist", { recursive: true, force: true });

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
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
});
