// The Task subsystem's public face: what the Task, TaskOutput and TaskStop tools may use. Everything else in task/
// is internal to it.
export {
  runIdSchema,
  runListSchema,
  runStatusSchema,
  runViewSchema,
  type RunState,
  type TaskReport,
} from "./records.js";
export { RunManager, type RunConfig } from "./runs.js";
export { presentRun } from "./render-report.js";
