/**
 * Feeds one sink its batches and turns the sink's answers into exactly one settlement per batch.
 *
 * Up to `sink.maxInFlight` batches are in flight at once, handed to the sink in the order they were read, so a
 * distant destination costs latency, not throughput; they may be acknowledged in any order (the ack tracker
 * turns that into an exact watermark). When an attempt fails, the driver stops handing out new batches, lets
 * the ones in flight finish, and then sends the failed ones again one at a time, oldest first, after capped
 * exponential backoff with jitter; only when all of them went through does the window open again. So a
 * retried batch is never overtaken by a later one that was not yet sent, and a failing destination sees one
 * request at a time, not a flood. A batch is never put back into the pipeline. Only a failure the sink marks
 * as not retryable (a permanent refusal) ends the retries: its batch goes to the dead-letter file.
 */
import { Backoff, sleep } from "./backoff.ts";
import type { Batch } from "./batch.ts";
import type { Sink, SendResult } from "./component.ts";
import type { DeadLetterFile, DeadLetter } from "./dead-letter.ts";
import { Delivery } from "./delivery.ts";
import { describeError, NagareError } from "./errors.ts";
import type { Logger } from "../observe/log.ts";
import { LATENCY_BUCKETS, type Metrics } from "../observe/metrics.ts";

export interface SinkDriverOptions {
  retryInitialMs: number;
  retryMaxMs: number;
  /** Where the bytes a sink holds encoded are counted (the pipeline's buffer). */
  memory?: { reserve(bytes: number): void; release(bytes: number): void };
  /** Made to replace a sink of the same name: nothing is sent until `adopt` hands over its batches. */
  paused?: boolean;
}

export class SinkDriver {
  /** Deliveries not yet started, in read order (consumed from `head`). */
  private waiting: Delivery[] = [];
  private head = 0;
  /** Deliveries whose last attempt failed, oldest first: they go again, one at a time, before anything new. */
  private readonly failed: Delivery[] = [];
  private inFlight = 0;
  private order = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** The backoff before the oldest failed batch is sent again. */
  private retryDelay = 0;
  private readonly abort = new AbortController();
  private idleWaiters: (() => void)[] = [];
  /** Woken when nothing is pending any more (a removed sink draining). */
  private drainWaiters: (() => void)[] = [];
  /** Set once a reload replaced this driver: where its late-returning attempts go. */
  private successor: SinkDriver | undefined;
  /** A reload removed the sink: what comes back late is let go. */
  private removed = false;
  /** A driver that replaces another waits for its predecessor's batches (`adopt`) before it sends. */
  private paused: boolean;
  private readonly backoff: Backoff;
  private readonly reserve: (bytes: number) => void;
  private readonly counters;
  private lastProgressAt = performance.now();
  private busySince = performance.now();
  private lastError: string | undefined;

  constructor(
    readonly sink: Sink,
    private readonly deadLetters: DeadLetterFile,
    private readonly log: Logger,
    metrics: Metrics,
    private readonly options: SinkDriverOptions,
  ) {
    this.backoff = new Backoff(options.retryInitialMs, options.retryMaxMs);
    this.paused = options.paused ?? false;
    const memory = options.memory;
    this.reserve = memory === undefined ? () => {} : (bytes) => memory.reserve(bytes);
    const labels = { sink: sink.name };
    const errorsOf = metrics.declare("counter", "nagare_sink_errors_total", "Failed delivery attempts by error code.");
    this.counters = {
      sentRecords: metrics.counter("nagare_sink_sent_records_total", "Records handed to the destination, counting every attempt.", labels),
      sentBytes: metrics.counter("nagare_sink_sent_bytes_total", "Bytes (buffer accounting) handed to the destination, counting every attempt.", labels),
      ackedRecords: metrics.counter("nagare_sink_acknowledged_records_total", "Records the destination acknowledged.", labels),
      ackedBytes: metrics.counter("nagare_sink_acknowledged_bytes_total", "Bytes (buffer accounting) of records the destination acknowledged.", labels),
      retriedRecords: metrics.counter("nagare_sink_retried_records_total", "Records sent again after a failed attempt.", labels),
      retries: metrics.counter("nagare_sink_retries_total", "Failed delivery attempts that are sent again.", labels),
      deadLettered: metrics.counter("nagare_sink_dead_lettered_records_total", "Records refused permanently and written to the dead-letter file.", labels),
      queued: metrics.gauge("nagare_sink_queued_batches", "Batches waiting for or in delivery.", labels),
      inFlight: metrics.gauge("nagare_sink_in_flight_batches", "Batches being sent right now.", labels),
      latency: metrics.histogram("nagare_sink_ack_latency_seconds", "Time from a batch being sealed to its acknowledgement.", LATENCY_BUCKETS, labels),
      errors: (code: string) => errorsOf({ ...labels, code }),
    };
    deadLetters.track(sink.name);
    sink.onReady?.(() => this.retryNow());
  }

  /**
   * How long the sink has had work without delivering any of it, in ms (0 when idle or progressing), and the
   * last error — what /health reports.
   */
  stall(now = performance.now()): { ms: number; lastError: string | undefined } {
    return { ms: this.pending > 0 ? now - Math.max(this.lastProgressAt, this.busySince) : 0, lastError: this.lastError };
  }

  enqueue(batch: Batch): void {
    if (this.pending === 0) this.busySince = performance.now();
    this.waiting.push(new Delivery(batch, this.order++, this.abort.signal, this.reserve));
    this.counters.queued.value++;
    this.pump();
  }

  /**
   * Settles as withdrawn every batch marked withdrawn that is not in flight (those in flight are settled so
   * when they come back failed).
   */
  withdraw(): void {
    const keep = (d: Delivery) => d !== undefined && !d.batch.withdrawn;
    const gone = [...this.waiting.slice(this.head), ...this.failed].filter((d) => d !== undefined && d.batch.withdrawn);
    this.waiting = this.waiting.slice(this.head).filter(keep);
    this.head = 0;
    const failed = this.failed.filter(keep);
    this.failed.length = 0;
    this.failed.push(...failed);
    for (const delivery of gone) this.settleWithdrawn(delivery);
    if (this.failed.length === 0) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.pump();
  }

  /**
   * A reload replaces this sink (same name, new config): after `stop()`, the batches it has not settled, in read
   * order, for its successor to send. What the old sink encoded for them is released.
   */
  takeUnsettled(): Batch[] {
    const left = [...this.failed, ...this.waiting.slice(this.head)].filter((d) => d !== undefined);
    left.sort((a, b) => a.order - b.order);
    this.failed.length = 0;
    this.waiting = [];
    this.head = 0;
    for (const delivery of left) this.forget(delivery);
    return left.map((d) => d.batch);
  }

  /**
   * After `takeUnsettled`: an attempt that was still in flight (a write the kernel would not cancel) and comes
   * back failed goes to the successor then, rather than being left unsettled.
   */
  handOverLate(successor: SinkDriver): void {
    this.successor = successor;
  }

  /**
   * A delivery this stopped driver will not send comes back (an attempt that outlived the stop, a dead-letter
   * write cut short): kept for a successor or a restart, handed to the successor, or — the sink was removed —
   * let go. A late batch joins the successor's queue at its end: only a write the kernel would not cancel gets
   * here, and it is ordered after what was handed over in time.
   */
  private park(delivery: Delivery): void {
    if (this.successor !== undefined) {
      this.forget(delivery);
      this.successor.takeLate(delivery.batch);
    } else if (this.removed) {
      this.settleWithdrawn(delivery);
    } else {
      this.failed.push(delivery);
    }
  }

  /** A batch handed over late; if this driver was itself replaced or removed since, it goes on from here. */
  private takeLate(batch: Batch): void {
    if (!this.abort.signal.aborted) return this.enqueue(batch);
    const delivery = new Delivery(batch, this.order++, this.abort.signal, this.reserve);
    this.counters.queued.value++;
    this.park(delivery);
  }

  /**
   * The batches of the sink this one replaces go first, before anything enqueued here since, and the driver
   * starts sending (a replacing driver is made with `paused`).
   */
  adopt(batches: readonly Batch[]): void {
    const queued = this.waiting.slice(this.head).filter((d) => d !== undefined).map((d) => d.batch);
    this.waiting = [];
    this.head = 0;
    this.order = 0;
    for (const batch of [...batches, ...queued]) this.waiting.push(new Delivery(batch, this.order++, this.abort.signal, this.reserve));
    this.counters.queued.value += batches.length;
    if (this.waiting.length > 0) this.busySince = performance.now();
    this.paused = false;
    this.pump();
  }

  /**
   * A reload removed this sink: it goes on delivering what it holds for up to `drainMs`, then stops; what is
   * left is settled as withdrawn (not sent to this sink, which no longer exists). Returns the records left.
   */
  async retire(drainMs: number): Promise<number> {
    if (this.pending > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.drainWaiters.push(resolve);
        timer = setTimeout(resolve, drainMs);
      });
      clearTimeout(timer);
    }
    await this.stop();
    this.removed = true;
    let records = 0;
    for (const batch of this.takeUnsettled()) {
      records += batch.records.length;
      batch.ack.settle(this.sink.name, "withdrawn");
    }
    return records;
  }

  /**
   * Stops handing out batches, tells the sink to stop waiting (delivery.signal) and waits up to `graceMs` for
   * the attempts in flight to return. A write blocked in the kernel (a fifo nobody reads, a hung NFS mount)
   * cannot be cancelled; it is abandoned, and its batch stays unacknowledged (read again after a restart).
   */
  async stop(graceMs = 1000): Promise<void> {
    this.abort.abort();
    clearTimeout(this.retryTimer);
    if (this.inFlight === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.idleWaiters.push(resolve);
      timer = setTimeout(resolve, graceMs);
    });
    clearTimeout(timer);
  }

  /** Batches handed to this driver and not yet settled. */
  private get pending(): number {
    return this.waiting.length - this.head + this.failed.length + this.inFlight;
  }

  /** Starts what may start now: the oldest failed batch alone once nothing is in flight, else the window. */
  private pump(): void {
    if (this.abort.signal.aborted || this.paused) return;
    if (this.drainWaiters.length > 0 && this.pending === 0) for (const wake of this.drainWaiters.splice(0)) wake();
    if (this.failed.length > 0) {
      if (this.inFlight === 0 && this.retryTimer === undefined) this.scheduleRetry();
      return;
    }
    while (this.inFlight < this.sink.maxInFlight && this.head < this.waiting.length) {
      const delivery = this.waiting[this.head]!;
      this.waiting[this.head++] = undefined as unknown as Delivery;
      void this.attempt(delivery);
    }
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
  }

  private scheduleRetry(): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.abort.signal.aborted || this.inFlight > 0) return;
      const delivery = this.failed.shift();
      if (delivery !== undefined) void this.attempt(delivery);
    }, this.retryDelay);
  }

  /** The sink saw its destination answer again: the failed batch waiting on its backoff goes now. */
  private retryNow(): void {
    if (this.retryTimer === undefined) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.retryDelay = 0;
    this.pump();
  }

  /** One attempt; the delivery is settled, or joins the failed ones in read order. */
  private async attempt(delivery: Delivery): Promise<void> {
    const batch = delivery.batch;
    if (batch.withdrawn) {
      this.settleWithdrawn(delivery);
      this.pump();
      return;
    }
    this.inFlight++;
    this.counters.inFlight.value = this.inFlight;
    delivery.attempts++;
    this.counters.sentRecords.value += batch.records.length;
    this.counters.sentBytes.value += batch.bytes;
    let result: SendResult;
    try {
      result = await this.sink.send(delivery);
    } catch (err) {
      // A throw is a bug in the sink, not the destination's verdict: the batch is kept and sent again.
      const error = err instanceof NagareError && err.retryable ? err : new NagareError("INTERNAL", `sink ${this.sink.name} failed unexpectedly`, { cause: err, retryable: true });
      result = { status: "failed", error };
    }
    // A withdrawn batch is read again by its source, so a refusal of it is dead-lettered then, not now.
    if (result.status === "failed" && (result.error.retryable || batch.withdrawn)) this.failedAttempt(delivery, result.error);
    else await this.settle(delivery, result);
    this.inFlight--;
    this.counters.inFlight.value = this.inFlight;
    if (this.inFlight === 0 && this.idleWaiters.length > 0) for (const wake of this.idleWaiters.splice(0)) wake();
    this.pump();
  }

  private failedAttempt(delivery: Delivery, error: NagareError): void {
    if (delivery.batch.withdrawn) return this.settleWithdrawn(delivery);
    // Stopped (shutdown, or replaced or removed by a reload): see park(); after a shutdown its records are read again.
    if (this.abort.signal.aborted) return this.park(delivery);
    const batch = delivery.batch;
    this.lastError = describeError(error);
    this.counters.errors(error.code).value++;
    this.counters.retries.value++;
    this.counters.retriedRecords.value += batch.records.length;
    let at = this.failed.length;
    while (at > 0 && this.failed[at - 1]!.order > delivery.order) at--;
    this.failed.splice(at, 0, delivery);
    // One backoff step per failed attempt of the oldest failed batch: batches that failed together (a
    // destination that went down with several in flight) wait one delay, not one each.
    if (at === 0) this.retryDelay = this.backoff.next();
    this.log.limited("error", "send-failed", `Sink ${this.sink.name} could not deliver a batch of ${batch.records.length} records from ${batch.source} and will send it again in ${Math.round(this.retryDelay)} ms: ${describeError(error)}.`, { attempt: this.backoff.attempts });
  }

  /** A delivered batch, or one refused for good: its dead letters are written first, then it counts as done. */
  private async settle(delivery: Delivery, result: SendResult): Promise<void> {
    const batch = delivery.batch;
    let letters: DeadLetter[];
    if (result.status === "failed") {
      this.counters.errors(result.error.code).value++;
      const reason = describeError(result.error);
      letters = batch.records.map((record) => ({ record, reason }));
    } else letters = result.rejected ?? [];
    if (letters.length > 0 && !(await this.writeDeadLetters(letters))) return this.park(delivery);
    if (this.backoff.attempts > 0 && this.failed.length === 0) {
      this.log.info(`Sink ${this.sink.name} delivers again after ${this.backoff.attempts} failed attempts.`);
      this.backoff.reset();
    } else if (this.failed.length > 0) {
      // The destination took a batch again: the next failed one goes at once rather than sit out the delay
      // of the outage; should it fail, the backoff goes on from where it was.
      this.retryDelay = 0;
    }
    this.counters.queued.value--;
    if (delivery.charged > 0) this.options.memory?.release(delivery.charged);
    this.counters.ackedRecords.value += batch.records.length - letters.length;
    this.counters.ackedBytes.value += batch.bytes;
    this.counters.latency.observe((performance.now() - batch.sealedAt) / 1000);
    this.lastProgressAt = performance.now();
    this.lastError = undefined;
    batch.ack.settle(this.sink.name, result.status === "failed" ? "rejected" : "delivered");
  }

  /** The driver lets go of a delivery it will not send: it no longer counts as queued, its encoding is freed. */
  private forget(delivery: Delivery): void {
    this.counters.queued.value--;
    if (delivery.charged > 0) this.options.memory?.release(delivery.charged);
    delivery.charged = 0;
  }

  private settleWithdrawn(delivery: Delivery): void {
    this.forget(delivery);
    delivery.batch.ack.settle(this.sink.name, "withdrawn");
  }

  /** Dead letters must be on disk before the batch counts as done; retried until they are, or until shutdown. */
  private async writeDeadLetters(letters: DeadLetter[]): Promise<boolean> {
    const retry = new Backoff(100, 30_000);
    for (;;) {
      try {
        await this.deadLetters.write(this.sink.name, letters);
        this.counters.deadLettered.value += letters.length;
        this.log.limited("warn", "dead-letter", `Sink ${this.sink.name} refused ${letters.length} records permanently; they were written to ${this.deadLetters.pathOf(this.sink.name)} (first reason: ${letters[0]?.reason}).`);
        return true;
      } catch (err) {
        this.log.limited("error", "dead-letter-failed", `Sink ${this.sink.name} cannot write its dead-letter file; the batch stays unacknowledged: ${describeError(err)}.`);
        await sleep(retry.next(), this.abort.signal);
        if (this.abort.signal.aborted) return false;
      }
    }
  }
}
