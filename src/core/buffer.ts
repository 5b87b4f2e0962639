/**
 * The byte-counted window between sources and sinks (Fluent Bit's mem_buf_limit, without dropping).
 * A record counts from the moment it is read until every sink it goes to has settled it. At `maxBytes` the
 * buffer is paused and sources stop reading; it resumes once usage falls to `resumeBytes`.
 */
export class MemoryBuffer {
  readonly resumeBytes: number;
  private used = 0;
  private paused = false;
  private pausedAt = 0;
  private pausedMsTotal = 0;
  private waiters: (() => void)[] = [];
  private room: Promise<void> | undefined;

  constructor(
    readonly maxBytes: number,
    private readonly onPauseChange: (paused: boolean, pausedMs: number) => void = () => {},
    resumeFraction = 0.9,
  ) {
    this.resumeBytes = Math.floor(maxBytes * resumeFraction);
  }

  get usedBytes(): number {
    return this.used;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Milliseconds spent paused so far, including the current pause. */
  get pausedMs(): number {
    return this.pausedMsTotal + (this.paused ? performance.now() - this.pausedAt : 0);
  }

  reserve(bytes: number): void {
    this.used += bytes;
    if (!this.paused && this.used >= this.maxBytes) {
      this.paused = true;
      this.pausedAt = performance.now();
      this.onPauseChange(true, 0);
    }
  }

  release(bytes: number): void {
    this.used -= bytes;
    if (this.paused && this.used <= this.resumeBytes) {
      this.paused = false;
      const pausedFor = performance.now() - this.pausedAt;
      this.pausedMsTotal += pausedFor;
      this.onPauseChange(false, pausedFor);
      const waiters = this.waiters;
      this.waiters = [];
      this.room = undefined;
      for (const wake of waiters) wake();
    }
  }

  /** Undefined when a source may read now; otherwise a promise that resolves when reading may resume. */
  waitForRoom(): Promise<void> | undefined {
    if (!this.paused) return undefined;
    this.room ??= new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.room;
  }
}
