import type { ParserName } from "./schema.js";

/** What a check's output says failed (key → detail) and passed, per test or per diagnostic. */
export interface Findings {
  failed: Map<string, string>;
  passed: Set<string>;
}

const DETAIL_CHARS = 1_500;
const clip = (s: string) => (s.length > DETAIL_CHARS ? `${s.slice(0, DETAIL_CHARS)}…` : s);
const empty = (): Findings => ({ failed: new Map(), passed: new Set() });

/**
 * Keys that repeat (two identical diagnostics in one file) get a count, so a second copy of an old violation is new.
 * seen counts each key's copies so far: probing "(×2)", "(×3)", … one by one would be quadratic in hostile output.
 */
function addCounted(f: Findings, seen: Map<string, number>, key: string, detail: string): void {
  let n = seen.get(key) ?? 0;
  let k = key;
  do k = ++n === 1 ? key : `${key} (×${n})`;
  while (f.failed.has(k));
  seen.set(key, n);
  f.failed.set(k, detail);
}

/** JUnit XML (pytest --junitxml, Surefire, Gradle): one key per test case, "classname::name". */
export async function parseJunit(xmls: string[]): Promise<Findings> {
  const { XMLParser } = await import("fast-xml-parser");
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: "",
    isArray: (name) => ["testsuite", "testcase"].includes(name),
  });
  const f = empty();
  const visit = (node: unknown): void => {
    if (!node || typeof node !== "object") return;
    const n = node as Record<string, unknown>;
    for (const tc of (n.testcase as Record<string, unknown>[] | undefined) ?? []) {
      const key = [tc.classname, tc.name].filter(Boolean).join("::");
      const problem = (tc.failure ?? tc.error) as Record<string, unknown> | string | undefined;
      if (problem === undefined) {
        if (tc.skipped === undefined) f.passed.add(key);
        continue;
      }
      const text =
        typeof problem === "string" ? problem : [problem.message, problem["#text"]].filter(Boolean).join("\n");
      f.failed.set(key, clip(String(text)));
    }
    for (const child of [n.testsuites, ...((n.testsuite as unknown[]) ?? [])]) visit(child);
  };
  for (const xml of xmls) visit(parser.parse(xml));
  return f;
}

/** `go test -json`: one key per test ("pkg Test/sub"), or per package when it fails without a test (build failure). */
export function parseGoJson(text: string): Findings {
  const f = empty();
  const output = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let e: { Action?: string; Package?: string; Test?: string; Output?: string };
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    const key = e.Test ? `${e.Package} ${e.Test}` : `${e.Package}`;
    if (e.Action === "output" && e.Output) output.set(key, [...(output.get(key) ?? []), e.Output]);
    if (e.Action === "pass" && e.Test) f.passed.add(key);
    if (e.Action === "fail" && (e.Test || !hasFailedTest(f, e.Package)))
      f.failed.set(key, clip((output.get(key) ?? []).join("").trim()));
  }
  // A build failure prints plain text before (or instead of) JSON: keep it as a per-check diagnostic.
  for (const [k, v] of parseDiagnostics(
    text
      .split("\n")
      .filter((l) => !l.startsWith("{"))
      .join("\n"),
  ).failed)
    f.failed.set(k, v);
  return f;
}

const hasFailedTest = (f: Findings, pkg?: string) => [...f.failed.keys()].some((k) => k.startsWith(`${pkg} `));

/** `cargo test`: "test path::name ... FAILED" lines, with the "---- name stdout ----" blocks as details. */
export function parseCargoTest(text: string): Findings {
  const f = empty();
  const blocks = new Map<string, string>();
  for (const m of text.matchAll(/^---- (\S+) stdout ----\n([\s\S]*?)(?=^---- |^failures:|^test result:)/gm))
    blocks.set(m[1]!, m[2]!.trim());
  for (const m of text.matchAll(/^test (\S+) \.\.\. (ok|FAILED)$/gm)) {
    if (m[2] === "ok") f.passed.add(m[1]!);
    else f.failed.set(m[1]!, clip(blocks.get(m[1]!) ?? ""));
  }
  for (const [k, v] of parseDiagnostics(text).failed) if (/\berror(\[E\d+\])?:/.test(k)) f.failed.set(k, v);
  return f;
}

const DURATION = /\s*\(?\d+(\.\d+)?\s?m?s\)?\s*$/;
const TEST_LINE: [RegExp, boolean][] = [
  [/^\s*not ok \d+ - (.+?)(\s+#.*)?$/, false], // TAP (node:test, tape)
  [/^\s*ok \d+ - (.+?)(\s+#.*)?$/, true],
  [/^\s*[✖✗×✕]\s+(.+)$/, false], // node:test spec, vitest, jest
  [/^\s*[✔✓√]\s+(.+)$/, true],
  [/^\s*FAIL\s+(\S+.*>.+)$/, false], // vitest's summary: FAIL file > suite > test
  [/^(?:FAILED|ERROR) (\S+::\S+)(?: - .*)?$/, false], // pytest -rA
  [/^PASSED (\S+::\S+)$/, true],
  [/^\s*--- FAIL: (\S+)/, false], // go test -v
  [/^\s*--- PASS: (\S+)/, true],
  [/^test (\S+) \.\.\. FAILED$/, false], // cargo test
  [/^test (\S+) \.\.\. ok$/, true],
];

const NEXT_TEST =
  /^\s*(# Subtest:|(not )?ok \d+ - |[✖✗×✕✔✓√▶]\s|FAIL\s|PASS\s|FAILED |PASSED |--- (FAIL|PASS):|=== RUN|test \S+ \.\.\.)/;

/** A failing test's line and what follows it, up to the next test (at most 15 lines), so another test's failure is never quoted. */
function ownLines(lines: string[], from: number): string {
  const end = lines.findIndex((l, j) => j > from && NEXT_TEST.test(l));
  return lines.slice(from, Math.min(end === -1 ? lines.length : end, from + 15)).join("\n");
}

/** A test runner's text output, read line by line in the formats above; keys are test names. */
export function parseTestText(text: string): Findings {
  const f = empty();
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    for (const [re, passed] of TEST_LINE) {
      const m = re.exec(line);
      if (!m) continue;
      const name = m[1]!.replace(DURATION, "").trim();
      if (!name || /^(failing tests|tests? \d+|\d+ (tests?|passed|failed))/i.test(name)) break;
      if (passed) f.passed.add(name);
      else if (!f.failed.has(name)) f.failed.set(name, clip(ownLines(lines, i)));
      break;
    }
  });
  for (const k of f.failed.keys()) f.passed.delete(k);
  return f;
}

const NOISE =
  /^(✖ \d+ problems?|npm (error|ERR!|warn)|> |\s*at |error: could not compile|error: Recipe|make: \*\*\*|Found \d+ errors?|\d+ problems?|ELIFECYCLE|Command failed)/i;
const LOOKS_DIAGNOSTIC = /\berror\b|\bwarning\b|✖|\b[A-Z]{1,4}\d{3,5}\b|^\S+:\d+(:\d+)?:|^\S+\(\d+,\d+\)/i;
const FILE_HEADER = /^(\/|\.{0,2}\/?[\w@.-]+\/)?[\w@./-]+\.\w{1,5}$/;

/** Type-checker, linter and compiler output: one key per diagnostic line with line and column numbers removed. */
export function parseDiagnostics(text: string): Findings {
  const f = empty();
  const seen = new Map<string, number>();
  let file = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (!line.trim() || NOISE.test(line.trim())) continue;
    if (FILE_HEADER.test(line.trim())) {
      file = line.trim(); // eslint's stylish format: a file header, then indented "line:col  error  message  rule" rows
      continue;
    }
    if (!LOOKS_DIAGNOSTIC.test(line)) continue;
    const position = /^\s+\d+:\d+\s+/.test(line) && file;
    const key = `${position ? `${file}: ` : ""}${withoutPosition(line.trim())}`;
    addCounted(f, seen, key, position ? `${file}\n${line}` : line);
  }
  return f;
}

/** "src/a.ts(3,7): error" / "src/a.go:3:7: msg" / "  3:7  error msg" → the same text without where in the file it is. */
export const withoutPosition = (line: string) =>
  line
    .replace(/^\d+:\d+\s+/, "")
    .replace(/\(\d+,\d+\)/g, "")
    .replace(/:\d+(:\d+)?:?(?=\s|$)/g, ":")
    .replace(/:\d+(:\d+)?(?=:)/g, "")
    .replace(/\s{2,}/g, " ")
    .trim();

export async function findingsFor(parser: ParserName, output: string, reports: string[]): Promise<Findings> {
  switch (parser) {
    case "junit":
      return reports.length ? parseJunit(reports) : parseTestText(output);
    case "go-json":
      return parseGoJson(output);
    case "cargo-test":
      return parseCargoTest(output);
    case "tests":
      return parseTestText(output);
    case "diagnostics":
      return parseDiagnostics(output);
    default:
      return empty();
  }
}
