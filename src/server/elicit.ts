import type { Server } from "@modelcontextprotocol/sdk/server/index.js";

/**
 * Asks the client's user a question through MCP elicitation, for AskUserQuestion inside a Task run. Resolves to the
 * text the agent gets back, or undefined when the client cannot ask (the run then ends with needs_input).
 */
export async function elicitAnswer(server: Server, question: string, options?: string[]): Promise<string | undefined> {
  if (!server.getClientCapabilities()?.elicitation) return undefined;
  const answer = options
    ? { type: "string" as const, title: "Answer", enum: options }
    : { type: "string" as const, title: "Answer" };
  const res = await server.elicitInput({
    message: question,
    requestedSchema: { type: "object", properties: { answer }, required: ["answer"] },
  });
  if (res.action === "accept" && typeof res.content?.answer === "string")
    return `The user answered: ${res.content.answer}`;
  return `The user chose not to answer (${res.action}). Proceed with your best judgement and say what you assumed.`;
}
