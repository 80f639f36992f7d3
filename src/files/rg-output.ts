// Readers of ripgrep's stdout, fed raw chunks as they arrive.
import { StringDecoder } from "node:string_decoder";

/** Where rg's stdout goes: each chunk as it arrives, then end() once rg has exited. */
export interface RgSink {
  write(chunk: Buffer): void;
  end(): void;
}

/** rg's stdout as UTF-8 records ending with sep (split by hand: several times faster than a line iterator). */
export class Records implements RgSink {
  private readonly decoder = new StringDecoder("utf8");
  private rest = "";

  constructor(
    private readonly onRecord: (record: string) => void,
    private readonly sep = "\n",
  ) {}

  write(chunk: Buffer): void {
    const records = (this.rest + this.decoder.write(chunk)).split(this.sep);
    this.rest = records.pop()!;
    for (const record of records) this.onRecord(record);
  }

  end(): void {
    const last = this.takeRest();
    if (last) this.onRecord(last);
  }

  /** The unfinished last record, decoded to its end (for a reader that goes on without decoding). */
  takeRest(): string {
    const last = this.rest + this.decoder.end();
    this.rest = "";
    return last;
  }
}

const MATCH = '{"type":"match"';
const MATCH_BYTES = Buffer.from(MATCH);
/** The most of MATCH that can end a chunk without all of it. */
const EDGE = MATCH.length - 1;

/**
 * rg --json output as lines, handed to onLine until it calls countOnly(); from then on match lines are only counted,
 * on the raw bytes, without decoding or splitting the rest of a large output. MATCH holds unescaped quotes, so it
 * cannot occur inside a JSON string: each occurrence starts a match message.
 */
export class JsonLines implements RgSink {
  private readonly lines: Records;
  /** Once counting: the last EDGE characters of the output so far, for a MATCH split across chunks. */
  private tail: string | undefined;
  /** Match lines seen after countOnly(). */
  counted = 0;

  constructor(onLine: (line: string) => void) {
    this.lines = new Records((line) => {
      if (this.tail === undefined) onLine(line);
      else if (line.startsWith(MATCH)) this.counted++;
    });
  }

  /** Stops handing on lines: the rest of the output is only counted. */
  countOnly(): void {
    this.tail ??= "";
  }

  write(chunk: Buffer): void {
    if (this.tail === undefined) {
      this.lines.write(chunk);
      if (this.tail !== undefined) {
        // Switched within this chunk: count the unfinished line, and go on with raw bytes.
        const rest = this.lines.takeRest();
        if (rest.startsWith(MATCH)) this.counted++;
        this.tail = rest.slice(-EDGE);
      }
      return;
    }
    const j = (this.tail + chunk.toString("latin1", 0, EDGE)).indexOf(MATCH);
    if (j !== -1 && j < this.tail.length) this.counted++;
    for (let i = chunk.indexOf(MATCH_BYTES); i !== -1; i = chunk.indexOf(MATCH_BYTES, i + MATCH.length)) this.counted++;
    this.tail = (this.tail + chunk.toString("latin1", Math.max(0, chunk.length - EDGE))).slice(-EDGE);
  }

  end(): void {
    if (this.tail === undefined) this.lines.end();
  }
}
