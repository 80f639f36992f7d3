import { z } from "zod";
import { NeedsInput } from "../server/errors.js";
import { defineTool } from "../server/tool.js";

/** Only inside Task: the sub-agent asks the user through MCP elicitation, or the run ends with needs_input. */
export default defineTool({
  name: "AskUserQuestion",
  title: "Ask the user",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input: z.object({
    question: z.string().min(1).describe("The question, with the context the user needs to answer it"),
    options: z
      .array(z.string().min(1))
      .min(2)
      .max(10)
      .optional()
      .describe("Answers to choose from, when there is a fixed set"),
  }),
  async handle({ question, options }, ctx) {
    const answer = await ctx.ask?.(question, options);
    if (answer === undefined) throw new NeedsInput({ question, options });
    return { text: answer };
  },
});
