import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

/** A stand-in for the Anthropic Messages API on loopback: replays scripted replies over real HTTP, recording every request. */

export interface MessagesRequest {
  model: string;
  system?: { type: string; text: string; cache_control?: unknown }[];
  tools?: { name: string; cache_control?: unknown }[];
  messages: { role: string; content: string | { type: string; [k: string]: unknown }[] }[];
  [k: string]: unknown;
}

export type Block = { type: "text"; text: string } | { type: "tool_use"; id: string; name: string; input: unknown };

export type Step =
  | { content: Block[]; stop_reason?: string; gate?: Gate; usage?: { input_tokens: number; output_tokens: number } }
  | { status: number; error: string }
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
export const use = (name: string, input: unknown): Block => ({ type: "tool_use", id: `toolu_${randomBytes(8).toString("hex")}`, name, input });
export const reply = (...content: Block[]): Step => ({ content, stop_reason: content.some((b) => b.type === "tool_use") ? "tool_use" : "end_turn" });
export const overloaded: Step = { status: 529, error: "overloaded_error" };

const tokens = (v: unknown) => Math.ceil(JSON.stringify(v ?? "").length / 4);

export class ScriptedModel {
  readonly requests: MessagesRequest[] = [];
  private readonly server = http.createServer((req, res) => void this.handle(req, res).catch((e: Error) => res.destroy(e)));
  private next = 0;

  constructor(private readonly steps: Step[]) {}

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
    let raw = "";
    for await (const chunk of req) raw += chunk;
    if (req.method !== "POST" || !req.url?.startsWith("/v1/messages")) return this.send(res, 404, { type: "error", error: { type: "not_found_error", message: `${req.method} ${req.url}` } });
    const body = JSON.parse(raw) as MessagesRequest;
    this.requests.push(body);
    let step = this.steps[this.next++];
    while (typeof step === "function") step = step(body);
    if (!step) return this.send(res, 500, { type: "error", error: { type: "api_error", message: "the scripted conversation has no more replies" } });
    if ("status" in step) return this.send(res, step.status, { type: "error", error: { type: step.error, message: step.error } });
    if (step.gate) {
      step.gate.reached = true;
      await step.gate.opened;
    }
    const last = body.messages.at(-1);
    const cached = body.system?.[0]?.cache_control ? tokens(body.system) + tokens(body.tools) + tokens(body.messages.slice(0, -1)) : 0;
    this.send(res, 200, {
      id: `msg_${randomBytes(8).toString("hex")}`,
      type: "message",
      role: "assistant",
      model: body.model,
      content: step.content,
      stop_reason: step.stop_reason ?? "end_turn",
      stop_sequence: null,
      usage: step.usage
        ? { ...step.usage, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }
        : { input_tokens: tokens(last), output_tokens: tokens(step.content), cache_read_input_tokens: this.requests.length > 1 ? cached : 0, cache_creation_input_tokens: this.requests.length > 1 ? tokens(last) : cached },
    });
  }

  private send(res: http.ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { "content-type": "application/json", "retry-after-ms": "20", "request-id": `req_${randomBytes(6).toString("hex")}` });
    res.end(JSON.stringify(body));
  }
}
