import type { Block, Message, ModelBackend, Usage } from "./model.js";

/**
 * Keeps the conversation inside the model's context window. The size comes from the API's own usage of the last
 * answer (plus an estimate for what was added since); old tool results are cleared first, then older turns are
 * summarised by the model.
 */

/** Characters per token assumed for text added since the last answer (low, so the estimate errs on the large side). */
const CHARS_PER_TOKEN = 3;
/** Share of the context window above which old tool results are cleared, and the share they are cleared down to. */
export const CLEAR_AT = 0.5;
const CLEAR_TO = 0.35;
/** Share above which older turns are summarised (when clearing was not enough). */
export const SUMMARISE_AT = 0.7;
const KEEP_RECENT_MESSAGES = 8;
const SUMMARY_MAX_TOKENS = 8_000;
const CLEARED =
  "[Earlier tool result cleared to keep the conversation within the model's context; call the tool again if you still need it.]";
export const SUMMARY_HEADING =
  "Summary of the earlier part of this task (older turns were summarised to fit the model's context):";

/** The conversation's size as the API measured it at the last answer. */
export interface ContextMark {
  tokens: number;
  chars: number;
}

/** Each message's JSON length, counted once: a message in the conversation is replaced, never changed in place. */
const messageChars = new WeakMap<Message, number>();

function charsOfMessage(m: Message): number {
  let n = messageChars.get(m);
  if (n === undefined) messageChars.set(m, (n = JSON.stringify(m).length));
  return n;
}

/** JSON.stringify(messages).length, without serialising the whole conversation again every turn. */
const charsOf = (messages: Message[]) =>
  messages.reduce((sum, m) => sum + charsOfMessage(m), 1 + Math.max(1, messages.length));

/** Tokens the whole request (system, tools, messages) held at the answer that `usage` came with, output included. */
export const requestTokens = (u: Usage) =>
  u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens + u.output_tokens;

export const markOf = (messages: Message[], usage: Usage): ContextMark => ({
  tokens: requestTokens(usage),
  chars: charsOf(messages),
});

/** Estimated tokens of a request with these messages: the last measured size plus the growth since, or a rough count. */
export function estimateTokens(messages: Message[], mark?: ContextMark): number {
  const chars = charsOf(messages);
  return mark ? mark.tokens + Math.max(0, chars - mark.chars) / CHARS_PER_TOKEN : chars / CHARS_PER_TOKEN;
}

/** Clears the content of tool results older than the last few messages, oldest first, until the conversation fits. */
export function compactConversation(
  messages: Message[],
  maxChars: number,
  keepRecent = KEEP_RECENT_MESSAGES,
): Message[] {
  let size = charsOf(messages);
  if (size <= maxChars) return messages;
  return messages.map((m, i) => {
    if (size <= maxChars || i >= messages.length - keepRecent || m.role !== "user" || typeof m.content === "string")
      return m;
    const content = (m.content as Block[]).map((b) => {
      if (b.type !== "tool_result" || size <= maxChars || b.content === CLEARED) return b;
      size -= JSON.stringify(b.content ?? "").length - JSON.stringify(CLEARED).length;
      return { ...b, content: CLEARED };
    });
    return { ...m, content } as Message;
  });
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}… [${s.length - n} more characters]` : s);

function blockText(b: Block, perResult: number): string | undefined {
  switch (b.type) {
    case "text":
      return b.text;
    case "tool_use":
    case "server_tool_use":
      return `[called ${b.name} ${clip(JSON.stringify(b.input), 400)}]`;
    case "tool_result": {
      const body =
        typeof b.content === "string"
          ? b.content
          : (b.content ?? []).map((c) => (c.type === "text" ? c.text : `[${c.type}]`)).join("\n");
      return `[result${b.is_error ? " (error)" : ""}: ${clip(body, perResult)}]`;
    }
    default:
      return undefined;
  }
}

/** Older turns as plain text for the summariser (thinking and search results left out). */
export function transcriptText(messages: Message[], maxChars: number): string {
  const perResult = Math.max(200, Math.floor(maxChars / Math.max(1, messages.length) / 2));
  const lines = messages.map((m) => {
    const blocks: Block[] = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content;
    return `${m.role === "user" ? "User/tools" : "Agent"}: ${blocks
      .map((b) => blockText(b, perResult))
      .filter(Boolean)
      .join("\n")}`;
  });
  return clip(lines.join("\n\n"), maxChars);
}

/** Where the kept tail starts: an assistant message, so the tail's tool calls keep their results; 0 when none fits. */
function tailStart(messages: Message[], keepRecent: number): number {
  for (let i = Math.max(2, messages.length - keepRecent); i < messages.length; i++)
    if (messages[i]!.role === "assistant") return i;
  return 0;
}

const SUMMARISER =
  "You condense the history of a coding agent's task so it can go on working with less context. Write a factual summary: " +
  "the task and any instructions from the user; files read, created or changed (with paths) and what changed; commands run and their outcomes; " +
  "decisions taken and why; errors met and whether they were fixed; what remains to do. No preamble.";

/**
 * Replaces the turns between the task and the last few messages with a summary written by the model.
 * Returns undefined when there is too little to summarise.
 */
export async function summariseOlderTurns(
  messages: Message[],
  backend: ModelBackend,
  contextTokens: number,
  signal: AbortSignal,
): Promise<{ messages: Message[]; usage: Usage } | undefined> {
  const cut = tailStart(messages, KEEP_RECENT_MESSAGES);
  if (cut < 2) return undefined;
  const [task, ...rest] = messages;
  const older = rest.slice(0, cut - 1);
  const text = transcriptText(older, Math.floor(contextTokens * CHARS_PER_TOKEN * 0.4));
  const reply = await backend.call(
    {
      system: SUMMARISER,
      tools: [],
      messages: [{ role: "user", content: `Summarise this history:\n\n${text}` }],
      maxTokens: SUMMARY_MAX_TOKENS,
      webUsesLeft: 0,
    },
    signal,
  );
  const summary = reply.content
    .flatMap((b) => (b.type === "text" ? [b.text] : []))
    .join("\n")
    .trim();
  if (!summary) return undefined;
  const taskBlocks: Block[] =
    typeof task!.content === "string"
      ? [{ type: "text", text: task!.content }]
      : (task!.content as Block[]).filter((b) => b.type === "text");
  const head: Message = {
    role: "user",
    content: [...taskBlocks, { type: "text", text: `${SUMMARY_HEADING}\n\n${summary}` }],
  };
  return { messages: [head, ...messages.slice(cut)], usage: reply.usage };
}

/** Shrinks the conversation to fit under `targetTokens`: clears old tool results, then (if needed) summarises. */
export async function fitConversation(
  messages: Message[],
  o: {
    backend: ModelBackend;
    contextTokens: number;
    mark?: ContextMark;
    targetTokens: number;
    summariseAbove: number;
    keepRecent?: number;
    signal: AbortSignal;
  },
): Promise<{ messages: Message[]; usage?: Usage; action?: "cleared" | "summarised" }> {
  const estimate = estimateTokens(messages, o.mark);
  if (estimate <= o.targetTokens) return { messages };
  const excessChars = (estimate - o.targetTokens) * CHARS_PER_TOKEN;
  const cleared = compactConversation(messages, Math.max(0, charsOf(messages) - excessChars), o.keepRecent);
  const afterClear = estimate - (charsOf(messages) - charsOf(cleared)) / CHARS_PER_TOKEN;
  if (afterClear <= o.summariseAbove)
    return { messages: cleared, action: cleared === messages ? undefined : "cleared" };
  const summarised = await summariseOlderTurns(cleared, o.backend, o.contextTokens, o.signal);
  if (!summarised) return { messages: cleared, action: cleared === messages ? undefined : "cleared" };
  return { messages: summarised.messages, usage: summarised.usage, action: "summarised" };
}

/** Thresholds for a model's context window, leaving room for the answer. */
export function contextBudget(contextTokens: number): { clearAbove: number; clearTo: number; summariseAbove: number } {
  return {
    clearAbove: contextTokens * CLEAR_AT,
    clearTo: contextTokens * CLEAR_TO,
    summariseAbove: contextTokens * SUMMARISE_AT,
  };
}
