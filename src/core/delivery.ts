/**
 * One batch on its way to one sink, owned by that sink's driver. The driver hands the same Delivery to every
 * attempt; the sink keeps what it made on the first attempt (encoded bytes, chunk ids, which parts the
 * destination already acknowledged) in `state`, so a retry resends exactly the same bytes and never repeats
 * what was acknowledged. The sink never has to recognise a resent batch by itself.
 */
import type { Batch } from "./batch.ts";

export class Delivery<State = unknown> {
  /** Attempts started so far, this one included. */
  attempts = 0;
  /** The sink's work for this batch, made on the first attempt and reused by every retry. */
  state: State | undefined = undefined;
  /** Bytes the sink holds for this batch (encoded requests), counted against the buffer until it is settled. */
  charged = 0;

  constructor(
    readonly batch: Batch,
    /** Position of the batch in the order the driver received it; retries keep it. */
    readonly order: number,
    /** Aborted when the agent stops: a sink stops waiting and answers a retryable failure. */
    readonly signal: AbortSignal,
    private readonly reserve: (bytes: number) => void = () => {},
  ) {}

  /**
   * The sink made `bytes` of its own for this batch (encoded, compressed): they count against the buffer like
   * the records do, so that what waits encoded for a slow destination is bounded too.
   */
  charge(bytes: number): void {
    this.charged += bytes;
    this.reserve(bytes);
  }
}
