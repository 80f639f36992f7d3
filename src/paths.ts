import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The package folder (holding package.json, prompts/ and tools/), whether run from dist/ or src/. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export const pkg = JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8")) as {
  name: string;
  version: string;
};
