/**
 * Collects one source's records into batches, sealed by size, count or age (whichever comes first).
 */
import type { LogRecord } from "./record.ts";

export interface BatchLimits {
  maxBytes: number;
  maxRecords: number;
  timeoutMs: number;
}

export class Batcher<P = unknown> {
  private records: LogRecord<P>[] = [];
  private bytes = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly onTimeout = () => {
    this.timer = undefined;
    this.flush();
  };

  constructor(
    private readonly limits: BatchLimits,
    private readonly seal: (records: LogRecord<P>[], bytes: number) => void,
  ) {}

  get pendingRecords(): number {
    return this.records.length;
  }

  add(record: LogRecord<P>): void {
    this.records.push(record);
    this.bytes += record.size;
    if (this.records.length >= this.limits.maxRecords || this.bytes >= this.limits.maxBytes) this.flush();
    else if (this.timer === undefined) this.timer = setTimeout(this.onTimeout, this.limits.timeoutMs);
  }

  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.records.length === 0) return;
    const records = this.records;
    const bytes = this.bytes;
    this.records = [];
    this.bytes = 0;
    this.seal(records, bytes);
  }
}
