import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { ErrorCode, type JSONRPCMessage, JSONRPCMessageSchema } from "@modelcontextprotocol/sdk/types.js";

/**
 * The largest JSON-RPC message the server reads: 10 MiB, the MCP SDK's own buffer size, so nothing that worked
 * before is refused. It is far above what a model sends in one call (a whole model turn is well under 1 MiB) and
 * bounds the memory one message costs (the line, its string and its parsed form).
 */
export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
const MIB = 1024 * 1024;
/** Bytes kept from each end of an over-long line, to find its id. */
const EDGE_BYTES = 256;
const ID = String.raw`(-?\d+|"(?:[^"\\]|\\.){0,200}")`;
const ID_FIRST = new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${ID}`);
const ID_LAST = new RegExp(String.raw`(?<!\\)"id"\s*:\s*${ID}\s*\}\s*$`);

/** The id of a request from the start or end of its line (where JSON-RPC libraries put it), if either shows it. */
export function idOfLine(head: string, tail: string): string | number | null {
  const found = ID_FIRST.exec(head) ?? ID_LAST.exec(tail);
  return found ? (JSON.parse(found[1]!) as string | number) : null;
}

interface Skipped {
  bytes: number;
  head: Buffer;
  tail: Buffer;
}

/**
 * MCP over stdio, one JSON message per line. Unlike the SDK's transport, a line over the limit is skipped as it
 * streams in (never buffered whole) and answered with -32600, and the server keeps serving. Requests other than
 * initialize and ping are refused until the client has sent initialize.
 */
export class StdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private chunks: Buffer[] = [];
  private size = 0;
  private skipped: Skipped | undefined;
  private initialized = false;
  private initializeId: string | number | undefined;
  /** Called once, after the answer to initialize is written: start-up chores wait for it. */
  onInitializeAnswered?: () => void;

  constructor(
    private readonly warn: (message: string) => void,
    private readonly maxBytes = MAX_MESSAGE_BYTES,
    private readonly stdin: NodeJS.ReadableStream = process.stdin,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
  ) {}

  async start(): Promise<void> {
    this.stdin.on("data", this.onData);
    this.stdin.on("error", this.onError);
  }

  async close(): Promise<void> {
    this.stdin.off("data", this.onData);
    this.stdin.off("error", this.onError);
    this.stdin.pause();
    this.chunks = [];
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    const sent = new Promise<void>((resolve) => {
      if (this.stdout.write(`${JSON.stringify(message)}\n`)) resolve();
      else this.stdout.once("drain", resolve);
    });
    if (this.initializeId !== undefined && !("method" in message) && "id" in message) this.noteAnswer(message.id);
    return sent;
  }

  private noteAnswer(id: string | number | null | undefined): void {
    if (id !== this.initializeId) return;
    const answered = this.onInitializeAnswered;
    [this.initializeId, this.onInitializeAnswered] = [undefined, undefined];
    answered?.();
  }

  private readonly onError = (error: Error) => this.onerror?.(error);

  private readonly onData = (chunk: Buffer) => {
    for (let start = 0; start < chunk.length; ) {
      const newline = chunk.indexOf(10, start);
      this.take(chunk.subarray(start, newline === -1 ? chunk.length : newline));
      if (newline === -1) break;
      this.endLine();
      start = newline + 1;
    }
  };

  private take(piece: Buffer): void {
    if (this.skipped) {
      this.skipped.bytes += piece.length;
      this.skipped.tail = Buffer.concat([this.skipped.tail, piece.subarray(-EDGE_BYTES)]).subarray(-EDGE_BYTES);
    } else if (this.size + piece.length > this.maxBytes) {
      const head = Buffer.concat([...this.chunks, piece.subarray(0, EDGE_BYTES)]).subarray(0, EDGE_BYTES);
      this.skipped = { bytes: this.size + piece.length, head, tail: Buffer.from(piece.subarray(-EDGE_BYTES)) };
      this.chunks = [];
      this.size = 0;
    } else if (piece.length) {
      this.chunks.push(piece);
      this.size += piece.length;
    }
  }

  private endLine(): void {
    const skipped = this.skipped;
    const line = Buffer.concat(this.chunks).toString("utf8").replace(/\r$/, "");
    [this.chunks, this.size, this.skipped] = [[], 0, undefined];
    if (skipped) return this.refuseOversize(skipped);
    if (line.trim()) this.receive(line);
  }

  private refuseOversize({ bytes, head, tail }: Skipped): void {
    const id = idOfLine(head.toString("utf8"), tail.toString("utf8"));
    const limit = `${this.maxBytes / MIB} MiB`;
    this.warn(`ignored a JSON-RPC message of ${bytes} bytes (id ${JSON.stringify(id)}): over the limit of ${limit}`);
    const message = `The message is ${(bytes / MIB).toFixed(1)} MiB, over the server's limit of ${limit} per JSON-RPC message, so it was ignored. Send less at once: e.g. write a large file in parts (Write, then Edit to append), or generate it with Run.`;
    this.answerError(id, ErrorCode.InvalidRequest, message);
  }

  private receive(line: string): void {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (e) {
      return this.answerError(
        null,
        ErrorCode.ParseError,
        `Parse error: the line is not JSON (${(e as Error).message}).`,
      );
    }
    const parsed = JSONRPCMessageSchema.safeParse(json);
    const id = (json as { id?: unknown } | null)?.id;
    const validId = typeof id === "string" || typeof id === "number" ? id : null;
    if (!parsed.success)
      return this.answerError(
        validId,
        ErrorCode.InvalidRequest,
        `Invalid JSON-RPC message: ${parsed.error.issues[0]?.message ?? "wrong shape"}.`,
      );
    const message = parsed.data;
    if ("method" in message && "id" in message && !this.initialized && message.method !== "ping") {
      if (message.method !== "initialize") {
        return this.answerError(
          message.id,
          ErrorCode.InvalidRequest,
          `The session is not initialized: send initialize before ${message.method}.`,
        );
      }
      this.initialized = true;
      this.initializeId = message.id;
    }
    this.onmessage?.(message);
  }

  private answerError(id: string | number | null, code: number, message: string): void {
    this.send({ jsonrpc: "2.0", id, error: { code, message } } as unknown as JSONRPCMessage).catch(() => undefined);
  }
}
