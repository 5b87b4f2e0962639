/**
 * A batch is the unit of delivery: records of one source in read order, and one acknowledgement that every
 * sink the batch is routed to settles exactly once (Vector's finalizers). When the last sink has settled, the
 * batch is done and its records stop counting against the buffer.
 */
import { NagareError } from "./errors.ts";
import type { LogRecord } from "./record.ts";

export type Settlement = "delivered" | "rejected";

export class BatchAck {
  private remaining: Set<string>;
  private rejectedBy: string[] = [];

  constructor(
    readonly batch: Batch,
    sinks: readonly string[],
    private readonly onDone: (batch: Batch) => void,
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

export class Batch {
  readonly ack: BatchAck;
  /** Set by the ack tracker: the marks this batch must clear in each of its streams. */
  marks: unknown;
  /** When the batch was sealed (performance.now()), for ack latency. */
  readonly sealedAt = performance.now();

  constructor(
    readonly source: string,
    readonly seq: number,
    readonly records: readonly LogRecord[],
    readonly bytes: number,
    sinks: readonly string[],
    onDone: (batch: Batch) => void,
  ) {
    this.ack = new BatchAck(this, sinks, onDone);
  }
}
