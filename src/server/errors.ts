// The failures the tool framework knows: a tool's expected error (shown to the model as-is), and interruptions that
// end a sub-agent's run from inside a tool instead of becoming a tool result.

/** An expected failure whose message is shown to the model as-is. */
export class ToolError extends Error {}

/** Ends the sub-agent's run from inside a tool (never turned into a tool result). */
export class Interrupt extends Error {}

/** Ends the run and hands a question to the user (AskUserQuestion without elicitation). */
export class NeedsInput extends Interrupt {
  constructor(readonly question: { question: string; options?: string[] }) {
    super(question.question);
  }
}
