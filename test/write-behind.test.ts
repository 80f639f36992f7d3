import { expect, test } from "vitest";
import { WriteBehind } from "../src/util/write-behind.js";

const tick = () => new Promise<void>((r) => setImmediate(r));

test("writes in the background, in order; values saved during a write collapse into the newest", async () => {
  const written: number[] = [];
  let release!: () => void;
  const w = new WriteBehind<number>(async (v) => {
    written.push(v);
    if (v === 1) await new Promise<void>((r) => (release = r));
  });
  w.save(1);
  expect(written).toEqual([]); // saving returns before anything is written
  await tick();
  expect(written).toEqual([1]);
  w.save(2);
  w.save(3);
  release();
  await w.flush();
  expect(written).toEqual([1, 3]);
  w.save(4);
  await w.flush();
  expect(written).toEqual([1, 3, 4]);
});

test("a failed write is thrown by flush and by the next save", async () => {
  const w = new WriteBehind<number>(async () => {
    throw new Error("disk full");
  });
  w.save(1);
  await expect(w.flush()).rejects.toThrow("disk full");
  expect(() => w.save(2)).toThrow("disk full");
});
