import { Semaphore } from "../util/semaphore.js";
import { type LiveRun, note } from "./live.js";

/** When runs may go: at most maxRuns at once, and runs without a worktree take turns on their workspace. */
export class Scheduler {
  private readonly workspaces = new Map<string, Semaphore>();
  private readonly slots: Semaphore;

  constructor(private readonly maxRuns: number) {
    this.slots = new Semaphore(maxRuns);
  }

  /** Waits (abortably) for the workspace, unless the run has its own worktree, then for a run slot. */
  async acquire(live: LiveRun): Promise<void> {
    const signal = live.abort.signal;
    if (live.state.isolation === "none") {
      const turn = this.workspaces.get(live.store.workspace) ?? new Semaphore(1);
      this.workspaces.set(live.store.workspace, turn);
      if (turn.busy) note(live, "queued: another run is changing this workspace");
      live.releases.push(await turn.acquire(signal));
    }
    if (this.slots.busy) note(live, `queued: ${this.maxRuns} runs in progress (at most ${this.maxRuns} at once)`);
    live.releases.push(await this.slots.acquire(signal));
  }
}
