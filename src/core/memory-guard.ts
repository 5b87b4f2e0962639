/**
 * Keeps garbage from pushing the process past its memory bound. The buffer bounds live records, but a
 * collector that lets garbage pile up (JSC grows its heap before collecting) could still double the resident
 * size while a backlog drains at full speed. When resident memory exceeds the start-up baseline by the soft
 * limit, a full collection runs; the next one waits until memory grew by `stepBytes` beyond what the last
 * collection left, so a process that is legitimately large is not collected continuously.
 */
export class MemoryGuard {
  readonly baseline = process.memoryUsage.rss();
  private threshold: number;
  private collections = 0;
  private sinceCheck = 0;

  constructor(
    private readonly softLimitBytes: number,
    private readonly stepBytes: number,
  ) {
    this.threshold = this.baseline + softLimitBytes;
  }

  get forcedCollections(): number {
    return this.collections;
  }

  /** Called with the bytes of every batch done; reads the resident size once per eighth of a step. */
  check(doneBytes: number): void {
    this.sinceCheck += doneBytes;
    if (this.sinceCheck < this.stepBytes / 8) return;
    this.sinceCheck = 0;
    if (process.memoryUsage.rss() <= this.threshold) return;
    Bun.gc(true);
    this.collections++;
    this.threshold = Math.max(this.baseline + this.softLimitBytes, process.memoryUsage.rss() + this.stepBytes);
  }
}
