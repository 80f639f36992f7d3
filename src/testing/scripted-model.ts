import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";

/**
 * A stand-in for the Anthropic Messages API on loopback: replays scripted replies over real HTTP (as server-sent
 * events when the request streams, as the SDK's messages.stream does), recording every request and its headers.
 */

export interface MessagesRequest {
  model: string;
  system?: { type: string; text: string; cache_control?: unknown }[];
  tools?: { name: string; type?: string; cache_control?: unknown; max_uses?: number; allowed_domains?: string[] }[];
  messages: { role: string; content: string | { type: string; [k: string]: unknown }[] }[];
  thinking?: { type: string; budget_tokens?: number };
  output_config?: { effort?: string };
  stream?: boolean;
  [k: string]: unknown;
}

export type Block =
  | { type: "text"; text: string }
  /** `partialJson`: stream this (incomplete) JSON as the input instead of `input`, as when the output limit cuts the call. */
  | { type: "tool_use"; id: string; name: string; input: unknown; partialJson?: string }
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "redacted_thinking"; data: string }
  | { type: "server_tool_use"; id: string; name: string; input: unknown }
  | { type: "web_search_tool_result"; tool_use_id: string; content: unknown[] };

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  output_tokens_details?: { thinking_tokens: number };
  server_tool_use?: { web_search_requests: number; web_fetch_requests: number };
}

export type Step =
  | {
      content: Block[];
      stop_reason?: string;
      stop_details?: { type: "refusal"; category: string | null; explanation: string | null };
      /** Answer only once the test opens this gate. */
      gate?: Gate;
      /** Pause between streamed chunks, so the answer takes a while to arrive (as a long one does). */
      chunkDelayMs?: number;
      /** Break the stream off after its first block starts with an SSE error event of this type (e.g. overloaded_error). */
      failMidStream?: string;
      usage?: Usage;
    }
  | { status: number; error: string; message?: string; headers?: Record<string, string> }
  | ((req: MessagesRequest) => Step);

/** Holds a scripted reply back until the test opens it: synchronisation on an event, never on a clock. */
export class Gate {
  private release!: () => void;
  readonly opened = new Promise<void>((r) => (this.release = r));
  /** Set once a request has reached the gated reply. */
  reached = false;
  open(): void {
    this.release();
  }
}

/** The same reply, answered only once gate is opened. */
export const gated = (step: Step, gate: Gate): Step => ({ ...(step as Extract<Step, { content: unknown }>), gate });

export const say = (text: string): Block => ({ type: "text", text });
export const use = (name: string, input: unknown): Block => ({
  type: "tool_use",
  id: `toolu_${randomBytes(8).toString("hex")}`,
  name,
  input,
});
export const think = (thinking: string): Block => ({
  type: "thinking",
  thinking,
  signature: `sig_${randomBytes(24).toString("base64")}`,
});
export const reply = (...content: Block[]): Step => ({
  content,
  stop_reason: content.some((b) => b.type === "tool_use") ? "tool_use" : "end_turn",
});
export const overloaded: Step = { status: 529, error: "overloaded_error" };
export const apiError = (status: number, error: string, message: string, headers?: Record<string, string>): Step => ({
  status,
  error,
  message,
  headers,
});

const tokens = (v: unknown) => Math.ceil(JSON.stringify(v ?? "").length / 4);
const CHUNK = 48;
const chunks = (s: string) =>
  s.length ? Array.from({ length: Math.ceil(s.length / CHUNK) }, (_, i) => s.slice(i * CHUNK, (i + 1) * CHUNK)) : [];

export class ScriptedModel {
  readonly requests: MessagesRequest[] = [];
  readonly headers: http.IncomingHttpHeaders[] = [];
  /** When each request arrived (ms since the epoch). */
  readonly times: number[] = [];
  /** When each request's body had arrived and when its answer was sent in full (performance.now() of this process). */
  readonly timings: { arrived: number; answered?: number }[] = [];
  // A client that drops its request (a cancelled run) must not become an unhandled error here.
  private readonly server = http.createServer((req, res) => void this.handle(req, res).catch(() => res.destroy()));
  private next = 0;

  constructor(private readonly steps: Step[]) {
    this.server.on("error", (e) => process.stderr.write(`scripted model: ${e.message}\n`));
  }

  async start(): Promise<string> {
    if (!this.server.listening) {
      await new Promise<void>((resolve, reject) => {
        this.server.once("error", reject);
        this.server.listen(0, "127.0.0.1", () => resolve());
      });
      // A client that hangs up mid-reply (a cancelled run) must not become an unhandled error.
      this.server.on("error", () => undefined);
      this.server.on("clientError", (_e, socket) => socket.destroy());
    }
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  get remaining(): number {
    return this.steps.length - this.next;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.on("error", () => undefined);
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const arrived = performance.now();
    if (req.method !== "POST" || !req.url?.startsWith("/v1/messages"))
      return this.send(res, 404, {
        type: "error",
        error: { type: "not_found_error", message: `${req.method} ${req.url}` },
      });
    const body = JSON.parse(raw) as MessagesRequest;
    this.requests.push(body);
    this.headers.push(req.headers);
    this.times.push(Date.now());
    const timing: { arrived: number; answered?: number } = { arrived };
    this.timings.push(timing);
    res.on("finish", () => (timing.answered = performance.now()));
    let step = this.steps[this.next++];
    while (typeof step === "function") step = step(body);
    if (!step)
      return this.send(res, 500, {
        type: "error",
        error: { type: "api_error", message: "the scripted conversation has no more replies" },
      });
    if ("status" in step)
      return this.send(
        res,
        step.status,
        { type: "error", error: { type: step.error, message: step.message ?? step.error } },
        step.headers,
      );
    if (step.gate) {
      step.gate.reached = true;
      await step.gate.opened;
    }
    const last = body.messages.at(-1);
    const cached = body.system?.[0]?.cache_control
      ? tokens(body.system) + tokens(body.tools) + tokens(body.messages.slice(0, -1))
      : 0;
    const usage = step.usage
      ? { cache_read_input_tokens: 0, cache_creation_input_tokens: 0, ...step.usage }
      : {
          input_tokens: tokens(last),
          output_tokens: tokens(step.content),
          cache_read_input_tokens: this.requests.length > 1 ? cached : 0,
          cache_creation_input_tokens: this.requests.length > 1 ? tokens(last) : cached,
        };
    const message = {
      id: `msg_${randomBytes(8).toString("hex")}`,
      type: "message",
      role: "assistant",
      model: body.model,
      stop_reason: step.stop_reason ?? "end_turn",
      stop_sequence: null,
      stop_details: step.stop_details ?? null,
    };
    if (body.stream) return this.stream(res, message, step.content, usage, step.chunkDelayMs ?? 0, step.failMidStream);
    this.send(res, 200, {
      ...message,
      content: step.content.map(({ partialJson: _, ...b }: Block & { partialJson?: string }) => b),
      usage,
    });
  }

  /** The answer as the API streams it: message_start, each block's start/deltas/stop, message_delta, message_stop. */
  private async stream(
    res: http.ServerResponse,
    message: Record<string, unknown>,
    content: Block[],
    usage: Record<string, unknown>,
    chunkDelayMs: number,
    failWith?: string,
  ): Promise<void> {
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      "request-id": `req_${randomBytes(6).toString("hex")}`,
    });
    const events: [string, Record<string, unknown>][] = [];
    const event = (type: string, data: Record<string, unknown>) => events.push([type, data]);
    const { stop_reason, stop_details, ...start } = message;
    const { output_tokens, server_tool_use, output_tokens_details, ...input } = usage;
    event("message_start", {
      message: { ...start, content: [], stop_reason: null, stop_details: null, usage: { ...input, output_tokens: 1 } },
    });
    content.forEach((b, index) => {
      const delta = (d: Record<string, unknown>) => event("content_block_delta", { index, delta: d });
      if (b.type === "text") {
        event("content_block_start", { index, content_block: { type: "text", text: "" } });
        for (const text of chunks(b.text)) delta({ type: "text_delta", text });
      } else if (b.type === "thinking") {
        event("content_block_start", { index, content_block: { type: "thinking", thinking: "", signature: "" } });
        for (const thinking of chunks(b.thinking)) delta({ type: "thinking_delta", thinking });
        delta({ type: "signature_delta", signature: b.signature });
      } else if (b.type === "tool_use" || b.type === "server_tool_use") {
        const { partialJson, ...block } = b as Block & { partialJson?: string };
        event("content_block_start", { index, content_block: { ...block, input: {} } });
        for (const partial_json of chunks(partialJson ?? JSON.stringify(b.input)))
          delta({ type: "input_json_delta", partial_json });
      } else event("content_block_start", { index, content_block: b });
      event("content_block_stop", { index });
    });
    event("message_delta", {
      delta: { stop_reason, stop_sequence: null, stop_details },
      usage: {
        output_tokens,
        ...(server_tool_use ? { server_tool_use } : {}),
        ...(output_tokens_details ? { output_tokens_details } : {}),
      },
    });
    event("message_stop", {});
    if (failWith)
      events.splice(2, events.length, [
        "error",
        { error: { type: failWith, message: failWith === "overloaded_error" ? "Overloaded" : failWith } },
      ]);
    for (const [type, data] of events) {
      if (chunkDelayMs && type === "content_block_delta") await new Promise((r) => setTimeout(r, chunkDelayMs));
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    }
    res.end();
  }

  private send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, {
      "content-type": "application/json",
      "retry-after-ms": "20",
      "request-id": `req_${randomBytes(6).toString("hex")}`,
      ...headers,
    });
    res.end(JSON.stringify(body));
  }
}
