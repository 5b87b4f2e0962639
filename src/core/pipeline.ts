/**
 * Wires sources, the buffer, batching, routing, sink drivers, the ack trackers and the checkpoint writer.
 *
 *   source.emit → buffer.reserve → batcher → seal → tracker.register → driver.enqueue (one per sink)
 *   sink settles → batch done → tracker.complete → checkpoint writer → store.save → buffer.release
 *
 * A record's bytes are released from the buffer only once a checkpoint covering it is saved, not merely when
 * it is done. So `buffer.max_bytes` bounds everything a crash can replay (in flight, and acknowledged but not
 * yet saved): duplicates after a kill -9 stay within one buffer. The writer runs on the checkpoint timer and
 * early, off the hot path, whenever a quarter of the buffer is waiting for a save.
 */
import { Backoff, sleep } from "./backoff.ts";
import { Batch } from "./batch.ts";
import { Batcher, type BatchLimits } from "./batcher.ts";
import { AckTracker } from "./ack-tracker.ts";
import { CheckpointStore } from "./checkpoint-store.ts";
import type { Sink, Source, SourceContext } from "./component.ts";
import { DeadLetterFile } from "./dead-letter.ts";
import { describeError, NagareError } from "./errors.ts";
import { MemoryBuffer } from "./buffer.ts";
import { MemoryGuard } from "./memory-guard.ts";
import type { LogRecord } from "./record.ts";
import { SinkDriver } from "./sink-driver.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";

export interface PipelineOptions {
  dataDir: string;
  bufferMaxBytes: number;
  batch: BatchLimits;
  checkpointIntervalMs: number;
  /** Routes: source name → the sinks that receive its records. */
  routes: ReadonlyMap<string, readonly string[]>;
  log: Logger;
  metrics: Metrics;
  retryInitialMs?: number;
  retryMaxMs?: number;
}

/** One running source with everything the pipeline keeps for it; it is also the source's context. */
class SourceLane implements SourceContext {
  readonly batcher: Batcher;
  readonly tracker = new AckTracker();
  readonly log: Logger;
  finished = false;
  running: Promise<void> | undefined;
  /** Bytes of done batches whose position is not saved yet; released from the buffer after the next save. */
  unsavedBytes = 0;
  private seq = 0;
  private readonly readRecords;
  private readonly readBytes;

  constructor(
    readonly source: Source,
    readonly saved: unknown,
    private readonly pipeline: Pipeline,
    readonly sinks: readonly SinkDriver[],
    readonly metrics: Metrics,
    limits: BatchLimits,
  ) {
    this.log = pipeline.log.child({ component: source.name });
    this.batcher = new Batcher(limits, (records, bytes) => this.seal(records, bytes));
    const labels = { source: source.name };
    this.readRecords = metrics.counter("nagare_source_read_records_total", "Records read by the source.", labels);
    this.readBytes = metrics.counter("nagare_source_read_bytes_total", "Bytes of records read by the source.", labels);
  }

  emit(record: LogRecord): void {
    this.readRecords.value++;
    this.readBytes.value += record.size;
    this.pipeline.buffer.reserve(record.size);
    this.batcher.add(record);
  }

  waitForRoom(): Promise<void> | undefined {
    return this.pipeline.buffer.waitForRoom();
  }

  private seal(records: LogRecord[], bytes: number): void {
    const batch = new Batch(this.source.name, this.seq++, records, bytes, this.sinks.map((d) => d.sink.name), this.pipeline.onBatchDone);
    this.tracker.register(batch);
    for (const driver of this.sinks) driver.enqueue(batch);
  }
}

export class Pipeline {
  readonly buffer: MemoryBuffer;
  readonly log: Logger;
  readonly checkpoints: CheckpointStore;
  private readonly lanes = new Map<string, SourceLane>();
  private readonly drivers = new Map<string, SinkDriver>();
  private stopping = false;
  private checkpointTimer: ReturnType<typeof setInterval> | undefined;
  private checkpointWrite: Promise<void> | undefined;
  private idleWaiters: (() => void)[] = [];
  private unsavedBytes = 0;
  private readonly earlySaveBytes: number;
  private readonly memory: MemoryGuard;
  private readonly bufferGauge;
  private readonly pausedGauge;

  constructor(
    private readonly options: PipelineOptions,
    private readonly sources: readonly Source[],
    private readonly sinks: readonly Sink[],
  ) {
    this.log = options.log;
    this.buffer = new MemoryBuffer(options.bufferMaxBytes, (paused, pausedMs) => {
      if (paused) this.log.limited("info", "buffer-paused", `The buffer is full (${options.bufferMaxBytes} bytes read and not yet acknowledged and saved): reading pauses until it drains to ${this.buffer.resumeBytes} bytes.`);
      else this.log.limited("info", "buffer-resumed", `The buffer drained after ${Math.round(pausedMs)} ms: reading resumes.`);
    });
    this.earlySaveBytes = Math.max(1, Math.floor(options.bufferMaxBytes / 4));
    this.memory = new MemoryGuard(Math.floor(options.bufferMaxBytes * 1.25), Math.floor(options.bufferMaxBytes / 4));
    this.checkpoints = new CheckpointStore(options.dataDir);
    const m = options.metrics;
    m.gauge("nagare_buffer_limit_bytes", "buffer.max_bytes.").value = options.bufferMaxBytes;
    this.bufferGauge = m.gauge("nagare_buffer_used_bytes", "Bytes of records read and not yet acknowledged.");
    this.pausedGauge = m.gauge("nagare_buffer_paused", "1 while sources are paused because the buffer is full.");
  }

  /** Called by every batch once all its sinks settled it. An arrow property: passed around without rebinding. */
  readonly onBatchDone = (batch: Batch): void => {
    const lane = this.lanes.get(batch.source);
    if (lane === undefined) throw new NagareError("INTERNAL", `batch of unknown source ${batch.source}`);
    lane.tracker.complete(batch);
    lane.unsavedBytes += batch.bytes;
    this.unsavedBytes += batch.bytes;
    if (this.unsavedBytes >= this.earlySaveBytes && this.checkpointWrite === undefined) void this.writeCheckpoints();
    this.memory.check(batch.bytes);
    if (this.idleWaiters.length > 0 && this.outstandingBatches() === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  };

  /** Loads checkpoints and starts every source and sink. Throws when the data dir is unusable. */
  start(): void {
    this.checkpoints.prepare();
    const deadLetters = new DeadLetterFile(this.options.dataDir);
    for (const sink of this.sinks) {
      const driver = new SinkDriver(sink, deadLetters, this.log.child({ component: sink.name }), this.options.metrics, {
        retryInitialMs: this.options.retryInitialMs ?? 100,
        retryMaxMs: this.options.retryMaxMs ?? 30_000,
      });
      this.drivers.set(sink.name, driver);
    }
    for (const source of this.sources) {
      const saved = this.checkpoints.load(source.name, (path, movedTo, reason) =>
        this.log.error(`The checkpoint ${path} is unusable (${reason}); it was moved to ${movedTo} and source ${source.name} starts as configured by start_at.`),
      )?.position;
      const sinks = (this.options.routes.get(source.name) ?? []).map((name) => this.driverOf(name));
      const lane = new SourceLane(source, saved, this, sinks, this.options.metrics, this.options.batch);
      this.lanes.set(source.name, lane);
      lane.running = this.runSource(lane);
    }
    this.checkpointTimer = setInterval(() => void this.writeCheckpoints(), this.options.checkpointIntervalMs);
  }

  /** True once every source ended on its own (read-once inputs exhausted) and everything read is done. */
  get exhausted(): boolean {
    for (const lane of this.lanes.values()) if (!lane.finished) return false;
    return this.outstandingBatches() === 0;
  }

  /** Resolves when no batch is outstanding, or after `timeoutMs`; true when drained. */
  async drained(timeoutMs: number): Promise<boolean> {
    for (const lane of this.lanes.values()) lane.batcher.flush();
    if (this.outstandingBatches() === 0) return true;
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const abort = new AbortController();
    await Promise.race([idle, sleep(timeoutMs, abort.signal)]);
    abort.abort();
    return this.outstandingBatches() === 0;
  }

  /**
   * Graceful stop: stop reading, send what was read, wait (bounded) for acknowledgements, save checkpoints.
   * Returns how many batches were still unacknowledged (their records are re-read after a restart).
   */
  async stop(timeoutMs: number): Promise<number> {
    this.stopping = true;
    for (const lane of this.lanes.values()) lane.source.stop();
    await Promise.all([...this.lanes.values()].map((lane) => lane.running));
    await this.drained(timeoutMs);
    const left = this.outstandingBatches();
    await Promise.all([...this.drivers.values()].map((d) => d.stop()));
    await Promise.all(this.sinks.map((s) => s.close().catch((err) => this.log.warn(`Sink ${s.name} did not close cleanly: ${describeError(err)}.`))));
    clearInterval(this.checkpointTimer);
    await this.checkpointWrite;
    await this.writeCheckpoints();
    return left;
  }

  outstandingBatches(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.tracker.outstandingBatches;
    return n;
  }

  /** The single checkpoint writer: one write at a time, only for sources whose watermark moved. */
  writeCheckpoints(): Promise<void> {
    this.bufferGauge.value = this.buffer.usedBytes;
    this.pausedGauge.value = this.buffer.isPaused ? 1 : 0;
    if (this.checkpointWrite !== undefined) return this.checkpointWrite;
    this.checkpointWrite = this.saveChanged().finally(() => (this.checkpointWrite = undefined));
    return this.checkpointWrite;
  }

  private async saveChanged(): Promise<void> {
    for (const lane of this.lanes.values()) {
      const bytes = lane.unsavedBytes;
      lane.unsavedBytes = 0;
      const position = lane.tracker.takeChanged() ? lane.source.checkpoint(lane.tracker.watermarks()) : undefined;
      try {
        if (position !== undefined) await this.checkpoints.save(lane.source.name, lane.source.type, position);
        this.unsavedBytes -= bytes;
        this.buffer.release(bytes);
      } catch (err) {
        // Keep the bytes counted: with checkpoints failing, the buffer fills and reading pauses rather than
        // letting the replay window after a crash grow without bound.
        lane.unsavedBytes += bytes;
        lane.tracker.markChanged();
        lane.log.limited("error", "checkpoint-write", `Cannot save the position of source ${lane.source.name}; reading pauses once the buffer is full, and after a restart it would re-read from the previous save: ${describeError(err)}.`);
      }
    }
  }

  private driverOf(name: string): SinkDriver {
    const driver = this.drivers.get(name);
    if (driver === undefined) throw new NagareError("INTERNAL", `route to unknown sink ${name}`);
    return driver;
  }

  /** Runs a source; a source that throws (a bug) is logged and restarted, never taking the agent down. */
  private async runSource(lane: SourceLane): Promise<void> {
    const backoff = new Backoff(1000, 30_000);
    while (!this.stopping) {
      try {
        await lane.source.run(lane);
        if (!this.stopping) {
          lane.log.info(`Source ${lane.source.name} has read all of its input.`);
          lane.finished = true;
          lane.batcher.flush();
        }
        return;
      } catch (err) {
        lane.log.limited("error", "source-crashed", `Source ${lane.source.name} failed unexpectedly and will be restarted: ${describeError(err)}.`);
        await sleep(backoff.next());
      }
    }
    lane.batcher.flush();
  }
}
