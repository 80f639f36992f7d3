import { z } from "zod";
import { verificationSchema } from "./verify/schema.js";

/**
 * The run data model, defined once. The same schemas give the TypeScript types, the Task tools' outputSchema,
 * and the validation of every record read from disk: records are untrusted input, so a record that fails is
 * reported as unreadable and never followed.
 */

/** Every status a run can have. A run has ended when its status is anything but queued or running. */
export const RUN_STATUSES = [
  "queued",
  "running",
  "completed",
  "verification_failed",
  "unverified",
  "refused",
  "max_turns",
  "budget_exhausted",
  "cancelled",
  "error",
  "needs_input",
  "interrupted",
] as const;
export const runStatusSchema = z.enum(RUN_STATUSES);
export type RunStatus = z.infer<typeof runStatusSchema>;
/** Ended: the run will not change any more by itself; it has a report.json (or gets one when read). */
export const isEnded = (s: RunStatus): boolean => s !== "queued" && s !== "running";
/** The statuses the agent loop itself ends with (the server adds queued, running and interrupted). */
export type AgentStatus = Exclude<RunStatus, "queued" | "running" | "interrupted">;

/** The server's run id: creation time (UTC) and 6 random hex digits, e.g. 20260130-075600-1a2b3c. */
export const RUN_ID = /^\d{8}-\d{6}-[0-9a-f]{6}$/;
export const runIdSchema = z
  .string()
  .regex(RUN_ID, "is not a run id (like 20260130-075600-1a2b3c, as returned by Task)");

/** A full git object id (SHA-1) in the server's own git directory. */
export const OBJECT_ID = /^[0-9a-f]{40}$/;
export const objectIdSchema = z.string().regex(OBJECT_ID, "is not a full 40-hex git object id");

export const usageSchema = z.object({
  input_tokens: z.number().nonnegative(),
  output_tokens: z.number().nonnegative(),
  cache_read_input_tokens: z.number().nonnegative(),
  cache_creation_input_tokens: z.number().nonnegative(),
  // Counted since thinking and web tools came; older records lack them and count 0.
  thinking_tokens: z.number().nonnegative().default(0).describe("Part of output_tokens spent thinking"),
  web_search_requests: z.number().nonnegative().default(0),
  web_fetch_requests: z.number().nonnegative().default(0),
});
export type Usage = z.infer<typeof usageSchema>;

/** A workspace-relative path as git reports it: no NUL, not absolute, no `..` or `.git` segment. */
const relativePath = z
  .string()
  .min(1)
  .refine(
    (p) => !p.includes("\0") && !p.startsWith("/") && !p.split("/").some((s) => s === ".." || s === ".git"),
    "is not a plain path inside the workspace",
  );

export const fileChangeSchema = z.object({
  path: relativePath,
  status: z.enum(["added", "modified", "deleted"]),
  insertions: z.number().int().nonnegative(),
  deletions: z.number().int().nonnegative(),
});
export type FileChange = z.infer<typeof fileChangeSchema>;

export const isolationSchema = z.enum(["none", "worktree"]);
const questionSchema = z.object({ question: z.string(), options: z.array(z.string()).optional() });
const timestamp = z.string().refine((s) => !Number.isNaN(Date.parse(s)), "is not a timestamp");

/** state.json: a run in progress (or one whose server stopped before it ended). */
export const runStateSchema = z.object({
  kind: z.literal("state"),
  run_id: runIdSchema,
  status: runStatusSchema,
  description: z.string(),
  agent: z.string(),
  model: z.string(),
  isolation: isolationSchema,
  /** Where the agent works: the workspace, or the run's worktree in the server's state folder. */
  workdir: z.string(),
  checkpoint: objectIdSchema.optional(),
  server_pid: z.number().int().positive(),
  created_at: timestamp,
  updated_at: timestamp,
  turn: z.number().int().nonnegative(),
  max_turns: z.number().int().positive(),
  activity: z.string(),
  usage: usageSchema,
  cost_usd: z.number().nonnegative(),
  model_calls: z.number().int().nonnegative(),
});
export type RunState = z.infer<typeof runStateSchema>;

/** Work a run handed to a partner agent (delegation); its changes are checked by the parent's verification. */
export const childRunSchema = z.object({
  run_id: runIdSchema.optional().describe("The partner's own run record (TaskOutput shows it)"),
  agent: z.string(),
  description: z.string(),
  status: runStatusSchema,
  summary: z.string(),
  cost_usd: z.number().nonnegative(),
  turns: z.number().int().nonnegative(),
  model_calls: z.number().int().nonnegative(),
  usage: usageSchema,
  error: z.string().optional(),
});
export type ChildRun = z.infer<typeof childRunSchema>;

/** report.json: an ended run. The commands are rebuilt from the validated fields whenever a report is read. */
export const taskReportSchema = z.object({
  kind: z.literal("report"),
  run_id: runIdSchema,
  status: runStatusSchema,
  description: z.string(),
  agent: z.string(),
  model: z.string(),
  summary: z.string().describe("The agent's own summary; the status comes from the server's checks"),
  files_changed: z.array(fileChangeSchema),
  verification: verificationSchema.nullable(),
  usage: usageSchema,
  cost_usd: z.number().nonnegative().describe("Estimated from the price table in prices.json"),
  model_calls: z.number().int().nonnegative(),
  turns: z.number().int().nonnegative(),
  fix_rounds: z.number().int().nonnegative(),
  duration_ms: z.number().nonnegative(),
  transcript: z.string().describe("Absolute path of the run's transcript (JSON lines), in the server's state folder"),
  /** Commit of the workspace before the run, in the server's own git directory; absent when none was taken. */
  checkpoint: objectIdSchema.optional(),
  /** For a worktree run: the commit of the worktree at its end. */
  result: objectIdSchema.optional(),
  revert_command: z.string(),
  isolation: isolationSchema,
  merge_command: z.string().optional(),
  question: questionSchema.optional(),
  error: z.string().optional(),
  notes: z.array(z.string()),
  parent_run_id: runIdSchema.optional().describe("For a partner agent's run: the run that delegated the work to it"),
  children: z
    .array(childRunSchema)
    .optional()
    .describe("Work the agent handed to partner agents; checked by this run's verification"),
});
export type TaskReport = z.infer<typeof taskReportSchema>;

/** messages.json: the conversation saved for resume (content blocks are checked for their type only). */
export const messagesSchema = z.array(
  z.object({
    role: z.enum(["user", "assistant"]),
    content: z.union([z.string(), z.array(z.looseObject({ type: z.string() }))]),
  }),
);

/** workspace.json in the state folder: which workspace the folder belongs to. */
export const workspaceRecordSchema = z.object({ workspace: z.string(), created_at: timestamp });
export type WorkspaceRecord = z.infer<typeof workspaceRecordSchema>;

export const runSummarySchema = z.object({
  run_id: runIdSchema,
  status: runStatusSchema,
  description: z.string(),
  agent: z.string(),
  model: z.string(),
  cost_usd: z.number(),
  model_calls: z.number(),
  turns: z.number(),
});
export type RunSummary = z.infer<typeof runSummarySchema>;

/** A run folder whose records failed validation: named, with the reason, and never followed. */
export const unreadableRunSchema = z.object({ name: z.string(), reason: z.string() });
export type UnreadableRun = z.infer<typeof unreadableRunSchema>;

/** What Task, TaskOutput {run_id} and TaskStop return: a report or a state, plus a one-line message. */
export const runViewSchema = runStateSchema
  .partial()
  .extend(taskReportSchema.partial().shape)
  .extend({
    kind: z
      .enum(["state", "report"])
      .describe('"report" when the run has ended, "state" while it is queued or running'),
    run_id: runIdSchema,
    status: runStatusSchema,
    message: z.string().describe("What the status means and what to do next"),
    description: z.string(),
    agent: z.string(),
    model: z.string(),
    usage: usageSchema,
    cost_usd: z.number(),
    model_calls: z.number(),
    isolation: isolationSchema,
  });

export const runListSchema = z.object({
  runs: z.array(runSummarySchema),
  unreadable: z.array(unreadableRunSchema).describe("Run folders whose records failed validation, with the reason"),
  totals: z.object({ runs: z.number(), usage: usageSchema, cost_usd: z.number(), model_calls: z.number() }),
});

/** Why a value failed a schema, in one line: "usage: expected object, received null; …". */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? `${i.path.join(".")}: ` : ""}${i.message}`)
    .join("; ");
}
