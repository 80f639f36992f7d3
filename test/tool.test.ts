import { describe, expect, test } from "vitest";
import { capText, fitStructured, MAX_RESULT_CHARS } from "../src/server/tool.js";

describe("the result size rule", () => {
  test("capText keeps head and tail and says how much was left out", () => {
    const text = `HEAD${"x".repeat(200_000)}TAIL`;
    const out = capText(text);
    expect(out.length).toBeLessThanOrEqual(MAX_RESULT_CHARS);
    expect(out.startsWith("HEAD")).toBe(true);
    expect(out.endsWith("TAIL")).toBe(true);
    expect(out).toMatch(/\[… \d+ characters left out to fit the result limit …\]/);
  });

  test("a small structured result is returned unchanged", () => {
    const value = { status: "completed", files: [{ path: "a.ts" }], summary: "done" };
    expect(fitStructured(value)).toEqual(value);
  });

  test("long strings and long lists are cut until the JSON fits", () => {
    const value = {
      status: "completed",
      summary: "s".repeat(150_000),
      files_changed: Array.from({ length: 20_000 }, (_, i) => ({ path: `src/file-${i}.ts`, insertions: i })),
    };
    const fitted = fitStructured(value);
    expect(JSON.stringify(fitted).length).toBeLessThanOrEqual(MAX_RESULT_CHARS);
    expect(fitted.status).toBe("completed");
    expect(fitted.summary).toMatch(/… \[\d+ characters cut\]$/);
    expect(fitted.files_changed.length).toBeGreaterThan(0);
    expect(fitted.files_changed[0]).toEqual({ path: "src/file-0.ts", insertions: 0 });
  });
});
