/**
 * A batch is the unit of delivery: records of one source in read order, and one acknowledgement that every
 * sink the batch is routed to settles exactly once (Vector's finalizers). When the last sink has settled, the
 * batch is done and its records stop counting against the buffer.
 */
import { NagareError } from "./errors.ts";
import type { LogRecord } from "./record.ts";

/**
 * How a sink finished with a batch: delivered, refused permanently (its records went to the dead-letter file),
 * or withdrawn without delivery — the sink was removed by a reload, or the batch's source was restarted and
 * reads these records again.
 */
export type Settlement = "delivered" | "rejected" | "withdrawn";

export class BatchAck<P = unknown> {
  private remaining: Set<string>;
  private rejectedBy: string[] = [];

  constructor(
    readonly batch: Batch<P>,
    sinks: readonly string[],
    private readonly onDone: (batch: Batch<P>) => void,
  ) {
    this.remaining = new Set(sinks);
  }

  get done(): boolean {
    return this.remaining.size === 0;
  }

  /** Sinks that settled the whole batch as rejected (its records went to the dead-letter file). */
  get rejections(): readonly string[] {
    return this.rejectedBy;
  }

  settle(sink: string, status: Settlement): void {
    if (!this.remaining.delete(sink)) {
      throw new NagareError("INTERNAL", `batch ${this.batch.source}#${this.batch.seq} was settled twice by sink ${sink}`);
    }
    if (status === "rejected") this.rejectedBy.push(sink);
    if (this.remaining.size === 0) this.onDone(this.batch);
  }
}

export class Batch<P = unknown> {
  readonly ack: BatchAck<P>;
  /** When the batch was sealed (performance.now()), for ack latency. */
  readonly sealedAt = performance.now();
  /**
   * Its source was restarted (a reload changed or removed it) and reads these records again, or never: a sink
   * that has not delivered it yet settles it as withdrawn instead of sending or retrying it.
   */
  withdrawn = false;

  constructor(
    readonly source: string,
    readonly seq: number,
    readonly records: readonly LogRecord<P>[],
    readonly bytes: number,
    sinks: readonly string[],
    onDone: (batch: Batch<P>) => void,
  ) {
    this.ack = new BatchAck(this, sinks, onDone);
  }
}
