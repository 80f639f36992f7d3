// What a check is (CheckSpec) and the small helpers the stack definitions and the planner share.
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { readRegularText } from "../../files/regular.js";
import type { ParserName } from "./schema.js";

export type Stack = "node" | "python" | "go" | "rust" | "java" | "configured";

export interface CheckSpec {
  name: string;
  /** Project folder, relative to the workspace root ("." for the root). */
  project: string;
  stack: Stack;
  /** The command as a person would type it in the project folder. */
  command: string;
  /** What actually runs (in the project folder, in the sandbox); "{report}" is replaced by a private report file. */
  script: string;
  parser: ParserName;
  /** Programs that must exist (on PATH, or as a path relative to the project) for the check to run. */
  requires: string[];
  /** Output meaning the tool or the dependencies it needs offline are missing (e.g. "No module named pytest"): not run. */
  missing?: { pattern: RegExp; reason: string }[];
  /** Exit code meaning "nothing to check" (pytest's 5: no tests collected). */
  nothingExit?: { code: number; reason: string };
  /** Report files the tool writes in the project folder (Surefire, Gradle), read after the run. */
  reportDirs?: string[];
}

export const NPM_DEFAULT_TEST = /no test specified/;

export const onPath = (cmd: string) =>
  (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, cmd)));
export const shq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
export const exists = (p: string) =>
  fs.stat(p).then(
    () => true,
    () => false,
  );
export const readText = async (p: string) => (await readRegularText(p)) ?? "";

/** Reads a file (path relative to the workspace) as it was at the checkpoint; undefined when it did not exist. */
export type AtCheckpoint = (rel: string) => Promise<string | undefined>;
export const nowhere: AtCheckpoint = async () => undefined;
export const relFile = (project: string, name: string) => (project === "." ? name : `${project}/${name}`);
