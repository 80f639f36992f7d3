/**
 * Writes the newest value in the background, one write at a time and in order: saving while a write is under way
 * queues the value, replacing any queued before it (which nobody needs once a newer one is written). A failed write
 * is thrown by the next save and by flush, so it is never lost. The write starts after pending I/O (setImmediate),
 * so serialising a large value does not hold up the caller's next step.
 */
export class WriteBehind<T> {
  private queued: { value: T } | undefined;
  private draining: Promise<void> | undefined;
  private failure: { error: unknown } | undefined;

  constructor(private readonly write: (value: T) => Promise<void>) {}

  /** Queues value to be written; throws the failure of an earlier write. */
  save(value: T): void {
    if (this.failure) throw this.failure.error;
    this.queued = { value };
    this.draining ??= this.drain();
  }

  /** Waits until every value saved so far is written; throws if a write failed. */
  async flush(): Promise<void> {
    await this.draining;
    if (this.failure) throw this.failure.error;
  }

  private async drain(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      for (let next = this.queued; next; next = this.queued) {
        this.queued = undefined;
        await this.write(next.value);
      }
    } catch (error) {
      this.failure = { error };
      this.queued = undefined;
    } finally {
      this.draining = undefined;
    }
  }
}
