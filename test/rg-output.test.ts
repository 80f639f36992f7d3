import { describe, expect, test } from "vitest";
import { JsonLines, Records } from "../src/files/rg-output.js";

/** Feeds data to a sink in pieces of the given sizes (cycled), then ends it. */
function feed(sink: { write(b: Buffer): void; end(): void }, data: Buffer, sizes: number[]): void {
  for (let at = 0, k = 0; at < data.length; k++) {
    const n = sizes[k % sizes.length]!;
    sink.write(data.subarray(at, at + n));
    at += n;
  }
  sink.end();
}

const match = (path: string, n: number, text: string) =>
  JSON.stringify({ type: "match", data: { path: { text: path }, lines: { text: `${text}\n` }, line_number: n } });
const context = (path: string, n: number, text: string) =>
  JSON.stringify({ type: "context", data: { path: { text: path }, lines: { text: `${text}\n` }, line_number: n } });

/** rg --json-like output: begin/end messages, match and context lines (with quotes, backslashes and non-ASCII). */
function output(matches: number): { data: Buffer; lines: string[] } {
  const lines: string[] = [];
  for (let i = 0; i < matches; i++) {
    lines.push(JSON.stringify({ type: "begin", data: { path: { text: `dir/é-${i}.ts` } } }));
    lines.push(context(`dir/é-${i}.ts`, 1, `before "quoted" \\ ${"ü".repeat(i % 7)}`));
    lines.push(match(`dir/é-${i}.ts`, 2, `{"type":"match" inside text ${i} ✓`));
    lines.push(JSON.stringify({ type: "end", data: { path: { text: `dir/é-${i}.ts` } } }));
  }
  lines.push(JSON.stringify({ type: "summary", data: {} }));
  return { data: Buffer.from(`${lines.join("\n")}\n`), lines };
}

describe("rg output readers", () => {
  test("Records splits on the separator across any chunk boundary, multi-byte characters included", () => {
    const names = ["a.ts", "dir/ü-é.ts", "x\ny.ts", "✓✓✓.md"];
    const data = Buffer.from(`${names.join("\0")}\0`);
    for (const sizes of [[1], [2], [3, 5], [7], [1000]]) {
      const got: string[] = [];
      feed(new Records((r) => got.push(r), "\0"), data, sizes);
      expect(got).toEqual(names);
    }
  });

  test("Records hands on an unterminated last record", () => {
    const got: string[] = [];
    feed(new Records((r) => got.push(r)), Buffer.from("one\ntwo"), [3]);
    expect(got).toEqual(["one", "two"]);
  });

  test("JsonLines hands on every line until countOnly, then counts the match lines exactly", () => {
    const { data, lines } = output(200);
    const expectedMatches = lines.filter((l) => l.startsWith('{"type":"match"')).length;
    for (const stopAfter of [0, 1, 3, 50, 399, 10_000]) {
      for (const sizes of [[1], [3], [14], [15], [16], [29, 1, 7], [4096], [65536]]) {
        let handed = 0;
        let matchesHanded = 0;
        const sink: JsonLines = new JsonLines((line) => {
          expect(line).toBe(lines[handed]);
          handed++;
          if (line.startsWith('{"type":"match"')) matchesHanded++;
          if (handed >= stopAfter) sink.countOnly();
        });
        feed(sink, data, sizes);
        expect(matchesHanded + sink.counted).toBe(expectedMatches);
        expect(handed).toBe(Math.min(Math.max(stopAfter, 1), lines.length));
      }
    }
  });
});
