/**
 * Feeds one sink its batches in order and turns the sink's answers into exactly one settlement per batch.
 * A batch the sink could not deliver is sent again — the same batch, after capped exponential backoff with
 * jitter — for as long as it takes; it is never put back into the pipeline.
 */
import { Backoff, sleep } from "./backoff.ts";
import type { Batch } from "./batch.ts";
import type { Sink, SendResult } from "./component.ts";
import type { DeadLetterFile, DeadLetter } from "./dead-letter.ts";
import { describeError, NagareError } from "./errors.ts";
import type { Logger } from "../observe/log.ts";
import { LATENCY_BUCKETS, type Metrics } from "../observe/metrics.ts";

export interface SinkDriverOptions {
  retryInitialMs: number;
  retryMaxMs: number;
}

export class SinkDriver {
  private queue: Batch[] = [];
  private head = 0;
  private wake: (() => void) | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly counters;
  private lastProgressAt = performance.now();
  private busySince = performance.now();
  private lastError: string | undefined;

  constructor(
    readonly sink: Sink,
    private readonly deadLetters: DeadLetterFile,
    private readonly log: Logger,
    metrics: Metrics,
    options: SinkDriverOptions,
  ) {
    this.backoff = new Backoff(options.retryInitialMs, options.retryMaxMs);
    const labels = { sink: sink.name };
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
      errors: (code: string) => metrics.counter("nagare_sink_errors_total", "Failed delivery attempts by error code.", { ...labels, code }),
    };
  }

  /**
   * How long the sink has had work without delivering any of it, in ms (0 when idle or progressing), and the
   * last error — what /health reports.
   */
  stall(now = performance.now()): { ms: number; lastError: string | undefined } {
    const busy = this.head < this.queue.length;
    return { ms: busy ? now - Math.max(this.lastProgressAt, this.busySince) : 0, lastError: this.lastError };
  }

  enqueue(batch: Batch): void {
    if (this.head === this.queue.length) this.busySince = performance.now();
    this.queue.push(batch);
    this.counters.queued.value++;
    this.loop ??= this.run();
    this.wake?.();
  }

  /**
   * Stops retrying and waits up to `graceMs` for an attempt in progress. A write blocked in the kernel (a fifo
   * nobody reads, a hung NFS mount) cannot be cancelled; it is abandoned, and its batch stays unacknowledged
   * (its records are read again after a restart, never lost).
   */
  async stop(graceMs = 1000): Promise<void> {
    this.abort.abort();
    this.wake?.();
    const grace = new AbortController();
    await Promise.race([this.loop, sleep(graceMs, grace.signal)]);
    grace.abort();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const batch = this.queue[this.head];
      if (batch === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      if (await this.deliver(batch, signal)) {
        this.queue[this.head++] = undefined as unknown as Batch;
        this.counters.queued.value--;
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
      }
    }
  }

  /** One batch until it is settled; false when shutdown interrupted it. */
  private async deliver(batch: Batch, signal: AbortSignal): Promise<boolean> {
    for (;;) {
      let result: SendResult;
      this.counters.inFlight.value = 1;
      this.counters.sentRecords.value += batch.records.length;
      this.counters.sentBytes.value += batch.bytes;
      try {
        result = await this.sink.send(batch, signal);
      } catch (err) {
        result = { status: "retry", error: err };
      } finally {
        this.counters.inFlight.value = 0;
      }
      if (result.status !== "retry") return this.settle(batch, result, signal);
      if (signal.aborted) return false;
      this.lastError = describeError(result.error);
      this.counters.errors(result.error instanceof NagareError ? result.error.code : "UNKNOWN").value++;
      this.counters.retries.value++;
      this.counters.retriedRecords.value += batch.records.length;
      const delay = this.backoff.next();
      this.log.limited("error", "send-failed", `Sink ${this.sink.name} could not deliver a batch of ${batch.records.length} records from ${batch.source} and will send it again in ${Math.round(delay)} ms: ${describeError(result.error)}.`, { attempt: this.backoff.attempts });
      await sleep(delay, signal);
      if (signal.aborted) return false;
    }
  }

  private async settle(batch: Batch, result: Exclude<SendResult, { status: "retry" }>, signal: AbortSignal): Promise<boolean> {
    const letters: DeadLetter[] =
      result.status === "rejected" ? batch.records.map((record) => ({ record, reason: result.reason })) : (result.rejected ?? []);
    if (letters.length > 0 && !(await this.writeDeadLetters(letters, signal))) return false;
    if (this.backoff.attempts > 0) {
      this.log.info(`Sink ${this.sink.name} delivers again after ${this.backoff.attempts} failed attempts.`);
      this.backoff.reset();
    }
    this.counters.ackedRecords.value += batch.records.length - letters.length;
    this.counters.ackedBytes.value += batch.bytes;
    this.counters.latency.observe((performance.now() - batch.sealedAt) / 1000);
    this.lastProgressAt = performance.now();
    this.lastError = undefined;
    batch.ack.settle(this.sink.name, result.status);
    return true;
  }

  /** Dead letters must be on disk before the batch counts as done; retried like a delivery. */
  private async writeDeadLetters(letters: DeadLetter[], signal: AbortSignal): Promise<boolean> {
    for (;;) {
      try {
        await this.deadLetters.write(this.sink.name, letters);
        this.counters.deadLettered.value += letters.length;
        this.log.limited("warn", "dead-letter", `Sink ${this.sink.name} refused ${letters.length} records permanently; they were written to ${this.deadLetters.pathOf(this.sink.name)} (first reason: ${letters[0]?.reason}).`);
        return true;
      } catch (err) {
        this.log.limited("error", "dead-letter-failed", `Sink ${this.sink.name} cannot write its dead-letter file; the batch stays unacknowledged: ${describeError(err)}.`);
        await sleep(this.backoff.next(), signal);
        if (signal.aborted) return false;
      }
    }
  }
}
