/**
 * Ordered, pipelined and (by default) idempotent delivery of record batches to their partitions.
 *
 * Each partition sends at most `maxInFlight` batches (≤ 5, what a broker remembers per producer for dedup) at
 * once, in the order they were handed over. With idempotence, each batch carries the producer id and a base
 * sequence number, stamped when it is first sent and kept for every retry, so a broker writes a batch at most
 * once and never out of order while this producer id lives:
 *   - a retry of a batch that was in fact written is recognised (DUPLICATE_SEQUENCE_NUMBER, or a later batch
 *     of the partition was acknowledged: then it was written before it) and counts as delivered;
 *   - after a batch failed, the partition takes only batches sent before (the driver's retries, oldest first)
 *     until every failed batch went through; a batch handed over for the first time meanwhile, or waiting for
 *     a slot behind the failure, fails at once and is retried after them;
 *   - a batch the broker refused for good (record- or topic-level) was not written: the sequence numbers it held
 *     are given to the batches after it, which are stamped again before they are re-sent;
 *   - a broker that lost this producer's state (UNKNOWN_PRODUCER_ID, or an out-of-order sequence with nothing
 *     unacknowledged before it) makes the producer fetch a new id; everything unacknowledged is stamped anew
 *     (it may then be written twice: duplicates stay within what was in flight).
 */
import { NagareError } from "../../core/errors.ts";
import type { LogRecord } from "../../core/record.ts";
import type { Logger } from "../../observe/log.ts";
import type { ProduceClient, ProducerIdentity } from "./client.ts";
import { classifyKafkaCode, classifyKafkaName, KafkaFailure } from "./errors.ts";
import { NO_STAMP, stamp } from "./record-batch.ts";

/** One partition's share of a delivery: one record batch. */
export class PartitionBatch {
  /** Base sequence stamped into the batch; -1 while unstamped. */
  seq = -1;
  /** The producer generation the stamp belongs to. */
  generation = -1;
  done = false;
  /** The broker refused the batch for a record-level reason: its records are sent again in pieces (see the sink). */
  isolate = false;
  /** While isolating: the pieces of records still to be sent, in order. */
  pieces: LogRecord[][] | undefined = undefined;
  /** Handed to the producer before (a retry, or a piece of one), so a failure on the partition does not hold it back. */
  retry = false;

  constructor(
    readonly topic: string,
    readonly partition: number,
    public leader: number,
    readonly records: LogRecord[],
    readonly bytes: Buffer,
  ) {}
}

export type BatchOutcome = { ok: true } | { ok: false; failure: KafkaFailure };

interface Waiting {
  batch: PartitionBatch;
  start: () => void;
  fail: (failure: KafkaFailure) => void;
}

class PartitionState {
  nextSeq = 0;
  /** The sequence after the highest acknowledged batch of this generation. */
  ackedEnd = 0;
  inFlight = 0;
  readonly queue: Waiting[] = [];
  /** Stamped, not yet acknowledged batches of this generation. */
  readonly unacked = new Set<PartitionBatch>();
  /** Batches whose last attempt failed and that are not delivered yet: new batches wait behind them. */
  readonly failed = new Set<PartitionBatch>();
}

const OK: BatchOutcome = { ok: true };
/** InitProducerId answers that mean the cluster will not give this client a producer id. */
const NO_PRODUCER_IDS = new Set(["UNSUPPORTED_VERSION", "NO_COMMON_VERSION", "CLUSTER_AUTHORIZATION_FAILED", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "INVALID_REQUEST"]);
const MAX_PARTITION_STATES = 10_000;
/** Sequence numbers wrap after 2^31 - 1; a new producer id is taken well before (at the next idle moment). */
const SEQUENCE_RENEW_AT = 0x7fff_ffff - (1 << 26);

export class IdempotentProducer {
  private identity: ProducerIdentity | undefined;
  private generation = 0;
  /** Idempotence was asked for and the cluster gives producer ids. */
  private idempotent: boolean;
  private needsNewId = true;
  /** A partition's sequence numbers are close to wrapping: take a new producer id at the next idle moment. */
  private sequencesAging = false;
  /** Why the last InitProducerId failed, until one succeeds. */
  private idFailure: KafkaFailure | undefined;
  private readonly partitions = new Map<string, PartitionState>();

  constructor(
    private readonly client: ProduceClient,
    private readonly maxInFlight: number,
    idempotent: boolean,
    private readonly log: Logger,
    private readonly sinkName: string,
  ) {
    this.idempotent = idempotent;
  }

  /**
   * Makes sure a producer id is at hand: fetches the first one; a new one after the brokers lost ours — on a
   * `retry` only, which the driver sends alone, oldest first, so that nothing is in flight and every batch
   * not yet delivered is sent after it, stamped anew; and at an idle moment, before sequence numbers would
   * wrap or the partition table grows too large.
   */
  async ready(retry: boolean): Promise<void> {
    // Batches waiting for an id that could not be had go first: a newer one fails behind them.
    if (this.idFailure !== undefined && !retry) throw this.idFailure;
    const renew = this.needsNewId ? this.identity === undefined || retry : this.wantsNewId() && this.idle();
    if (!renew) return;
    if (!this.idempotent) {
      this.partitions.clear();
      this.needsNewId = false;
      return;
    }
    try {
      this.identity = await this.client.initProducerId();
    } catch (err) {
      const failure = KafkaFailure.from(err, "InitProducerId");
      // Only a cluster that answers "no" goes on without idempotence; not reaching it (or a wrong password) is retried.
      if (!NO_PRODUCER_IDS.has(failure.classified.name)) throw (this.idFailure = failure);
      this.idempotent = false;
      this.identity = undefined;
      this.log.warn(`Sink ${this.sinkName}: the brokers give no producer id (${failure.classified.name}), so delivery goes on without idempotence: a retried batch may then be written twice.`);
    }
    // Every pending batch belongs to the old generation now and is stamped anew when it is sent.
    this.idFailure = undefined;
    this.needsNewId = false;
    this.sequencesAging = false;
    this.generation++;
    this.partitions.clear();
  }

  private wantsNewId(): boolean {
    return this.sequencesAging || this.partitions.size > MAX_PARTITION_STATES;
  }

  private idle(): boolean {
    for (const state of this.partitions.values()) if (state.inFlight > 0 || state.queue.length > 0 || state.unacked.size > 0) return false;
    return true;
  }

  /** One attempt for one batch: resolves when the broker answered (never rejects). */
  send(batch: PartitionBatch, signal: AbortSignal): Promise<BatchOutcome> {
    const state = this.partitionOf(batch);
    if (this.writtenBefore(batch, state)) return Promise.resolve(OK);
    if (state.failed.size > 0 && !batch.retry) return Promise.resolve(this.behindFailure(batch, state));
    batch.retry = true;
    return new Promise<BatchOutcome>((resolve) => {
      const onAbort = () => this.cancel(state, waiting);
      const waiting: Waiting = {
        batch,
        start: () => {
          signal.removeEventListener("abort", onAbort);
          void this.produce(batch, state).then(resolve);
        },
        fail: (failure) => {
          signal.removeEventListener("abort", onAbort);
          resolve({ ok: false, failure });
        },
      };
      if (state.inFlight >= this.maxInFlight) {
        state.queue.push(waiting);
        signal.addEventListener("abort", onAbort, { once: true });
      } else waiting.start();
    });
  }

  /** A refused batch was dealt with (sent in pieces, or dead-lettered): it no longer holds the partition back. */
  delivered(batch: PartitionBatch): void {
    this.partitionOf(batch).failed.delete(batch);
  }

  private async produce(batch: PartitionBatch, state: PartitionState): Promise<BatchOutcome> {
    if (batch.seq < 0 || batch.generation !== this.generation) this.stampBatch(batch, state);
    state.inFlight++;
    let outcome: BatchOutcome;
    try {
      const result = await this.client.produce(batch.leader, { topic: batch.topic, partition: batch.partition, batch: batch.bytes });
      outcome = result.errorCode === 0 ? this.acknowledged(batch, state) : this.refused(batch, state, result.errorCode, result.message);
    } catch (err) {
      outcome = { ok: false, failure: KafkaFailure.from(err, `producing to ${batch.topic}[${batch.partition}]`) };
      this.client.invalidate(batch.topic); // the leader may have moved away from a broker that went down
    }
    state.inFlight--;
    if (outcome.ok) state.failed.delete(batch);
    else {
      state.failed.add(batch);
      for (const waiting of state.queue.splice(0)) waiting.fail(this.behindFailure(waiting.batch, state).failure);
    }
    while (state.inFlight < this.maxInFlight && state.queue.length > 0) state.queue.shift()!.start();
    return outcome;
  }

  private stampBatch(batch: PartitionBatch, state: PartitionState): void {
    if (!this.idempotent || this.identity === undefined) {
      if (batch.seq !== -1 || batch.generation !== -1) stamp(batch.bytes, NO_STAMP);
      batch.seq = -1;
      batch.generation = -1;
      return;
    }
    batch.seq = state.nextSeq;
    batch.generation = this.generation;
    state.nextSeq += batch.records.length;
    if (state.nextSeq > SEQUENCE_RENEW_AT) this.sequencesAging = true;
    state.unacked.add(batch);
    stamp(batch.bytes, { producerId: this.identity.producerId, producerEpoch: this.identity.producerEpoch, baseSequence: batch.seq });
  }

  private acknowledged(batch: PartitionBatch, state: PartitionState): BatchOutcome {
    batch.done = true;
    state.failed.delete(batch);
    if (batch.generation === this.generation && batch.seq >= 0) {
      state.unacked.delete(batch);
      state.ackedEnd = Math.max(state.ackedEnd, batch.seq + batch.records.length);
    }
    return OK;
  }

  private refused(batch: PartitionBatch, state: PartitionState, code: number, message: string | null): BatchOutcome {
    let classified = classifyKafkaCode(code);
    if (classified.kind === "duplicate") return this.acknowledged(batch, state);
    if (classified.kind === "sequence") {
      // Out of order behind an earlier batch that failed too (or was refused for good, giving up its sequence
      // numbers): that one goes first, this one after it, stamped anew if need be.
      if (batch.seq < 0 || this.earlierUnacked(batch, state)) classified = { ...classified, kind: "retry" };
      else this.needsNewId = true;
    }
    if (classified.kind === "record" || classified.kind === "topic") this.notWritten(batch, state);
    if (classified.kind === "record") batch.isolate = true;
    if (classified.kind === "retry" || classified.kind === "config") this.client.invalidate(batch.topic);
    const detail = message === null ? "" : `: ${message}`;
    return { ok: false, failure: new KafkaFailure(classified, `the broker refused a batch for ${batch.topic}[${batch.partition}] (${classified.name})${detail}`) };
  }

  /** The batch was not written: it and every unacknowledged batch after it give up their sequence numbers. */
  private notWritten(batch: PartitionBatch, state: PartitionState): void {
    if (batch.seq < 0 || batch.generation !== this.generation) return;
    state.nextSeq = batch.seq;
    for (const other of state.unacked) {
      if (other.seq >= batch.seq) {
        other.seq = -1;
        state.unacked.delete(other);
      }
    }
  }

  private earlierUnacked(batch: PartitionBatch, state: PartitionState): boolean {
    for (const other of state.unacked) if (other !== batch && other.seq < batch.seq) return true;
    return false;
  }

  /** A batch stamped in this generation that lies below an acknowledged one was written (brokers keep order). */
  private writtenBefore(batch: PartitionBatch, state: PartitionState): boolean {
    if (batch.seq < 0 || batch.generation !== this.generation || batch.seq + batch.records.length > state.ackedEnd) return false;
    this.acknowledged(batch, state);
    return true;
  }

  private behindFailure(batch: PartitionBatch, state: PartitionState): { ok: false; failure: KafkaFailure } {
    state.failed.add(batch);
    batch.retry = true;
    return { ok: false, failure: new KafkaFailure(classifyKafkaName("EARLIER_BATCH_FAILED"), `an earlier batch for ${batch.topic}[${batch.partition}] failed; this one is sent again after it`) };
  }

  private cancel(state: PartitionState, waiting: Waiting): void {
    const at = state.queue.indexOf(waiting);
    if (at < 0) return;
    state.queue.splice(at, 1);
    waiting.fail(new KafkaFailure(classifyKafkaName("CANCELLED"), "the agent is stopping", new NagareError("CANCELLED", "the agent is stopping")));
  }

  private partitionOf(batch: PartitionBatch): PartitionState {
    const key = `${batch.topic}\0${batch.partition}`;
    let state = this.partitions.get(key);
    if (state === undefined) this.partitions.set(key, (state = new PartitionState()));
    return state;
  }
}
