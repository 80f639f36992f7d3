// The other Node majors the project supports, as .ci/run installs them (npm's node-<os>-<arch> packages in .cache/).
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Each other major with the path its node binary has once installed (it may be missing). */
export const otherNodes = ["22", "24"].map((major) => ({
  major,
  node: path.join(
    root,
    ".cache",
    `node${major}`,
    "node_modules",
    `node-${process.platform}-${process.arch}`,
    "bin",
    "node",
  ),
}));
