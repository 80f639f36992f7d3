/** A counting semaphore that hands a freed permit straight to the next waiter (FIFO); waiting can be aborted. */
export class Semaphore {
  private readonly queue: (() => void)[] = [];

  constructor(private free: number) {}

  get busy(): boolean {
    return this.free === 0;
  }

  /** Resolves with a release function once a permit is held; rejects if the signal aborts first. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.free > 0) this.free--;
    else {
      await new Promise<void>((resolve, reject) => {
        const grant = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        const onAbort = () => {
          this.queue.splice(this.queue.indexOf(grant), 1);
          reject(signal!.reason);
        };
        this.queue.push(grant);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) next();
      else this.free++;
    };
  }
}
