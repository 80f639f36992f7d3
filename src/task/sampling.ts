// The client's own model through MCP sampling (with tools), for clients that lend one.
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { CreateMessageResultWithTools, SamplingMessage } from "@modelcontextprotocol/sdk/types.js";
import type { Block, ModelBackend } from "./model.js";
import { emptyUsage } from "./pricing.js";

type SamplingBlock = SamplingMessage["content"] extends infer C ? (C extends (infer B)[] ? B : C) : never;

function toSampling(block: Block): SamplingBlock | undefined {
  switch (block.type) {
    case "text":
      return { type: "text", text: block.text };
    case "tool_use":
      return { type: "tool_use", id: block.id, name: block.name, input: block.input as Record<string, unknown> };
    case "tool_result": {
      const content =
        typeof block.content === "string"
          ? [{ type: "text" as const, text: block.content }]
          : (block.content ?? []).flatMap((c) => (c.type === "text" ? [{ type: "text" as const, text: c.text }] : []));
      return { type: "tool_result", toolUseId: block.tool_use_id, content, isError: block.is_error };
    }
    default:
      return undefined;
  }
}

function fromSampling(
  block: CreateMessageResultWithTools["content"] extends infer C ? (C extends (infer B)[] ? B : C) : never,
): Block | undefined {
  if (block.type === "text") return { type: "text", text: block.text };
  if (block.type === "tool_use") return { type: "tool_use", id: block.id, name: block.name, input: block.input };
  return undefined;
}

export const SAMPLING_MODEL = "client model (MCP sampling)";

/** The client's own model through MCP sampling (sampling/createMessage with tools). */
export function samplingBackend(server: Server): ModelBackend {
  return {
    kind: "sampling",
    model: SAMPLING_MODEL,
    serverTools: [],
    notes: [],
    async call(req, signal) {
      const messages: SamplingMessage[] = req.messages.map((m) => {
        const blocks = typeof m.content === "string" ? [{ type: "text" as const, text: m.content }] : m.content;
        return { role: m.role, content: blocks.map(toSampling).filter((b) => b !== undefined) } as SamplingMessage;
      });
      const res = (await server.createMessage(
        {
          systemPrompt: req.system,
          messages,
          maxTokens: req.maxTokens,
          tools: req.tools.map((t) => ({ name: t.name, description: t.description, inputSchema: t.input_schema })),
          toolChoice: { mode: "auto" },
        },
        { signal, timeout: 10 * 60_000 },
      )) as CreateMessageResultWithTools;
      const content = (Array.isArray(res.content) ? res.content : [res.content])
        .map(fromSampling)
        .filter((b) => b !== undefined);
      const stop =
        res.stopReason === "toolUse" ? "tool_use" : res.stopReason === "maxTokens" ? "max_tokens" : "end_turn";
      return { content, stopReason: stop, usage: emptyUsage(), model: res.model };
    },
  };
}
