import type { TaskReport, RunState } from "./records.js";
import { type Store, writeRecord } from "./store.js";

/** A run in this server's memory while it is queued or running; its records on disk follow it. */
export interface LiveRun {
  store: Store;
  state: RunState;
  releases: (() => void)[];
  /** State writes, chained so a late one never lands after the final one. */
  saved: Promise<void>;
  abort: AbortController;
  done: Promise<TaskReport>;
  listeners: Set<(message: string) => void>;
}

const HEARTBEAT_MS = 5_000;

/** Records the run's latest activity and tells whoever is waiting on it. */
export function note(live: LiveRun, activity: string): void {
  live.state.activity = activity;
  for (const l of live.listeners) l(activity);
}

/** Runs with a state write queued that has not started yet (it will write the state as it is then). */
const queued = new WeakSet<LiveRun>();

/** Writes the run's state record, after any write still under way; one queued write serves every call made meanwhile. */
export function persist(live: LiveRun): Promise<void> {
  if (queued.has(live)) return live.saved;
  queued.add(live);
  live.saved = live.saved
    .then(() => {
      queued.delete(live);
      return writeRecord(live.store, live.state.run_id, "state.json", {
        ...live.state,
        updated_at: new Date().toISOString(),
      });
    })
    .catch(() => undefined);
  return live.saved;
}

/** Waits up to ms for a live run to end, forwarding its progress; true when it ended. */
export async function waitFor(
  live: LiveRun,
  ms: number,
  progress: (m: string) => void,
  signal?: AbortSignal,
): Promise<boolean> {
  live.listeners.add(progress);
  let timer: NodeJS.Timeout | undefined;
  // A heartbeat in every phase (queued, model call, long command) so clients that reset their timeout on progress keep waiting.
  const started = Date.now();
  const heartbeat = setInterval(
    () => progress(`${live.state.activity} · ${Math.round((Date.now() - started) / 1000)}s`),
    HEARTBEAT_MS,
  );
  try {
    const ended = await Promise.race([
      live.done.then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms);
        signal?.addEventListener("abort", () => r(false));
      }),
    ]);
    return ended;
  } finally {
    clearTimeout(timer);
    clearInterval(heartbeat);
    live.listeners.delete(progress);
  }
}
