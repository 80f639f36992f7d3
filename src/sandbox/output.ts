// A command's output kept within bounds: its beginning and end, however much it prints.
import stripAnsi from "strip-ansi";

const MAX_OUTPUT_CHARS = 30_000;
const KEEP_BYTES = 64 * 1024;

/** Keeps the first and last KEEP_BYTES of a stream, however long it gets. */
export class BoundedOutput {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private latest: Buffer = Buffer.alloc(0);
  total = 0;

  /** The last non-blank line printed so far, for progress messages. */
  lastLine(): string {
    const line =
      this.latest
        .subarray(-512)
        .toString("utf8")
        .split(/\r?\n|\r/)
        .filter((l) => l.trim())
        .at(-1) ?? "";
    return stripAnsi(line).slice(0, 200);
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    this.latest = chunk;
    if (this.headBytes < KEEP_BYTES) {
      const take = chunk.subarray(0, KEEP_BYTES - this.headBytes);
      this.head.push(take);
      this.headBytes += take.length;
      chunk = chunk.subarray(take.length);
    }
    if (!chunk.length) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    if (this.tailBytes > 2 * KEEP_BYTES) {
      const joined = Buffer.concat(this.tail);
      this.tail = [joined.subarray(joined.length - KEEP_BYTES)];
      this.tailBytes = KEEP_BYTES;
    }
  }

  /** Clean text of at most MAX_OUTPUT_CHARS: head and tail, with a marker saying what was left out. */
  render(): { output: string; omitted: number } {
    const clean = (b: Buffer) =>
      stripAnsi(b.toString("utf8"))
        .replace(/\r\n/g, "\n")
        .replace(/^.*\r(?!$)/gm, "");
    const tail = Buffer.concat(this.tail);
    const droppedBytes = this.total - this.headBytes - tail.length;
    const head = clean(Buffer.concat(this.head));
    const tailText = clean(tail);
    if (droppedBytes === 0 && head.length + tailText.length <= MAX_OUTPUT_CHARS)
      return { output: head + tailText, omitted: 0 };
    const half = MAX_OUTPUT_CHARS / 2 - 100;
    const omitted = Math.max(0, head.length - half) + droppedBytes + Math.max(0, tailText.length - half);
    return {
      output: `${head.slice(0, half)}\n\n[… ${omitted} characters of output left out …]\n\n${tailText.slice(-half)}`,
      omitted,
    };
  }
}
