/**
 * Wires sources (each in its lane: batcher, ack tracker, accounting), the buffer, the sink drivers and the
 * checkpoint writer; reloads are applied by reload.ts.
 *
 *   source.emit → lane: buffer.reserve → batcher → seal → tracker.register → driver.enqueue (one per sink)
 *   sink settles → batch done → lane: tracker.complete → checkpoint writer → store.save → lane: buffer.release
 *
 * A record's bytes are released from the buffer only once a checkpoint covering it is saved, not merely when
 * it is done. So `buffer.max_bytes` bounds everything a crash can replay (in flight, and acknowledged but not
 * yet saved): duplicates after a kill -9 stay within one buffer. The writer runs on the checkpoint timer and
 * early, off the hot path, whenever a quarter of the buffer is waiting for a save.
 */
import { sleep } from "./backoff.ts";
import type { Batch } from "./batch.ts";
import type { BatchLimits } from "./batcher.ts";
import { MemoryBuffer } from "./buffer.ts";
import { CheckpointStore } from "./checkpoint-store.ts";
import type { Sink, Source } from "./component.ts";
import { DataDirLock } from "./data-dir-lock.ts";
import { DeadLetterFile } from "./dead-letter.ts";
import { describeError, NagareError } from "./errors.ts";
import { MemoryGuard } from "./memory-guard.ts";
import { SinkDriver } from "./sink-driver.ts";
import { reconfigure, type Reconfiguration, type ReloadHost, type ReloadOutcome } from "./reload.ts";
import { seconds, SourceLane, type LaneHost } from "./source-lane.ts";
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
  /** Rotation of the dead-letter files (config `dead_letter`). */
  deadLetter?: { maxBytes: number; maxFiles: number };
}

export interface SinkHealth {
  sink: string;
  healthy: boolean;
  /** How long the sink has had records waiting without delivering any (0 when idle or delivering). */
  stalled_seconds: number;
  reason?: string;
}

export interface SourceHealth {
  source: string;
  healthy: boolean;
  /** How long the source has been unable to read (0 while it reads). */
  failing_seconds: number;
  /** Present while the source cannot read, even before it counts as unhealthy. */
  reason?: string;
}

export interface CheckpointHealth {
  source: string;
  file: string;
  healthy: boolean;
  /** How long every save of this source's position has failed (0 while saves succeed). */
  failing_seconds: number;
  reason?: string;
}

export interface PipelineHealth {
  healthy: boolean;
  sources: SourceHealth[];
  sinks: SinkHealth[];
  checkpoints: CheckpointHealth[];
}

export class Pipeline implements LaneHost, ReloadHost {
  readonly buffer: MemoryBuffer;
  readonly log: Logger;
  readonly checkpoints: CheckpointStore;
  readonly lanes = new Map<string, SourceLane>();
  readonly drivers = new Map<string, SinkDriver>();
  private readonly deadLetters: DeadLetterFile;
  private readonly lock: DataDirLock;
  private routes: ReadonlyMap<string, readonly string[]>;
  private checkpointTimer: ReturnType<typeof setInterval> | undefined;
  private checkpointWrite: Promise<void> | undefined;
  private stopCollecting: () => void = () => {};
  private idleWaiters: (() => void)[] = [];
  private readonly earlySaveBytes: number;
  private readonly memory: MemoryGuard;

  constructor(
    private readonly options: PipelineOptions,
    private readonly sources: readonly Source[],
    private readonly sinks: readonly Sink[],
  ) {
    this.log = options.log;
    this.routes = options.routes;
    this.buffer = new MemoryBuffer(options.bufferMaxBytes, (paused, pausedMs) => {
      if (paused) this.log.limited("info", "buffer-paused", `The buffer is full (${options.bufferMaxBytes} bytes read and not yet acknowledged and saved): reading pauses until it drains to ${this.buffer.resumeBytes} bytes.`);
      else this.log.limited("info", "buffer-resumed", `The buffer drained after ${Math.round(pausedMs)} ms: reading resumes.`);
    });
    this.earlySaveBytes = Math.max(1, Math.floor(options.bufferMaxBytes / 4));
    this.memory = new MemoryGuard(Math.floor(options.bufferMaxBytes * 1.25), Math.floor(options.bufferMaxBytes / 4));
    this.checkpoints = new CheckpointStore(options.dataDir);
    this.lock = new DataDirLock(options.dataDir);
    this.deadLetters = new DeadLetterFile(options.dataDir, { ...options.deadLetter, log: this.log, metrics: options.metrics });
  }

  /** Loads checkpoints and starts every source and sink. Throws when the data dir is unusable. */
  start(): void {
    this.lock.acquire();
    try {
      this.checkpoints.prepare();
      this.checkpoints.assertSupported(this.sources.map((s) => s.name));
    } catch (err) {
      this.lock.release();
      throw err;
    }
    for (const sink of this.sinks) this.addDriver(sink);
    for (const source of this.sources) this.addLane(source);
    this.checkpointTimer = setInterval(() => void this.writeCheckpoints(), this.options.checkpointIntervalMs);
    this.stopCollecting = this.options.metrics.onCollect(() => this.collect());
  }

  /** Called by every lane when one of its batches is done (all its sinks settled it). */
  batchDone(bytes: number): void {
    if (this.checkpointWrite === undefined && this.unsavedBytes() >= this.earlySaveBytes) void this.writeCheckpoints();
    this.memory.check(bytes);
    if (this.idleWaiters.length > 0 && this.outstandingBatches() === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** True once every source ended on its own (read-once inputs exhausted) and everything read is done. */
  get exhausted(): boolean {
    for (const lane of this.lanes.values()) if (!lane.finished) return false;
    return this.outstandingBatches() === 0;
  }

  /** Resolves when no batch is outstanding, or after `timeoutMs`; true when drained. */
  async drained(timeoutMs: number): Promise<boolean> {
    for (const lane of this.lanes.values()) lane.flush();
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
    await Promise.all([...this.lanes.values()].map((lane) => lane.stop()));
    await this.drained(timeoutMs);
    const left = this.outstandingBatches();
    await Promise.all([...this.drivers.values()].map((d) => this.closeDriver(d)));
    clearInterval(this.checkpointTimer);
    this.stopCollecting();
    await this.checkpointWrite;
    await this.writeCheckpoints();
    this.lock.release();
    return left;
  }

  /** A reload that keeps the buffer and checkpoint settings: see reload.ts. */
  reconfigure(change: Reconfiguration): Promise<ReloadOutcome> {
    return reconfigure(this, change);
  }

  /** Routes the lanes anew; every sink named must have a driver. */
  setRoutes(routes: ReadonlyMap<string, readonly string[]>): void {
    this.routes = routes;
    for (const lane of this.lanes.values()) lane.routeTo(this.driversFor(lane.name));
  }

  /** Bytes of done batches waiting for a checkpoint save, over all lanes. */
  private unsavedBytes(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.unsavedBytes;
    return n;
  }

  outstandingBatches(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.outstandingBatches;
    return n;
  }

  /**
   * What /health reports, computed here for every component: a sink with records waiting that delivered
   * nothing, a source that cannot read, and a source whose position cannot be saved are unhealthy once that has
   * lasted `maxStallMs`.
   */
  health(maxStallMs: number): PipelineHealth {
    const now = performance.now();
    const sinks = [...this.drivers.values()].map((d): SinkHealth => {
      const { ms, lastError } = d.stall(now);
      const healthy = ms <= maxStallMs;
      const reason = healthy ? undefined : `nothing delivered for ${Math.round(ms / 1000)} s while records wait${lastError ? `: ${lastError}` : ""}`;
      return { sink: d.sink.name, healthy, stalled_seconds: seconds(ms), ...(reason === undefined ? {} : { reason }) };
    });
    const lanes = [...this.lanes.values()];
    const sources = lanes.map((lane): SourceHealth => {
      const problem = lane.problem;
      const ms = problem === undefined ? 0 : now - problem.since;
      const reason = problem === undefined ? undefined : problem.fix === undefined ? problem.cause : `${problem.cause}; to fix it: ${problem.fix}`;
      return { source: lane.name, healthy: ms <= maxStallMs, failing_seconds: seconds(ms), ...(reason === undefined ? {} : { reason }) };
    });
    const checkpoints = lanes.map((lane): CheckpointHealth => {
      const failure = lane.checkpointFailure;
      const ms = failure === undefined ? 0 : now - failure.since;
      const file = this.checkpoints.pathOf(lane.name);
      return { source: lane.name, file, healthy: ms <= maxStallMs, failing_seconds: seconds(ms), ...(failure === undefined ? {} : { reason: failure.reason }) };
    });
    const healthy = [...sinks, ...sources, ...checkpoints].every((c) => c.healthy);
    return { healthy, sources, sinks, checkpoints };
  }

  /** The single checkpoint writer: one write at a time, only for sources whose watermark moved. */
  writeCheckpoints(): Promise<void> {
    if (this.checkpointWrite !== undefined) return this.checkpointWrite;
    this.checkpointWrite = this.saveChanged().finally(() => (this.checkpointWrite = undefined));
    return this.checkpointWrite;
  }

  /** A save pass that starts after everything acknowledged until now (one already running may predate it). */
  async saveCheckpoints(): Promise<void> {
    await this.checkpointWrite;
    await this.writeCheckpoints();
  }

  private async saveChanged(): Promise<void> {
    for (const lane of this.lanes.values()) {
      const taken = lane.takeSavable();
      const file = this.checkpoints.pathOf(lane.name);
      try {
        if (taken.position !== undefined) await this.checkpoints.save(lane.name, lane.source.type, taken.position);
        lane.saveDone(taken, file);
      } catch (err) {
        lane.saveFailed(taken, file, err);
      }
    }
  }

  private addDriver(sink: Sink): void {
    this.drivers.set(sink.name, this.makeDriver(sink, false));
  }

  makeDriver(sink: Sink, paused: boolean): SinkDriver {
    return new SinkDriver(sink, this.deadLetters, this.log.child({ component: sink.name }), this.options.metrics, {
      retryInitialMs: this.options.retryInitialMs ?? 100,
      retryMaxMs: this.options.retryMaxMs ?? 30_000,
      memory: this.buffer,
      paused,
    });
  }

  async closeDriver(driver: SinkDriver): Promise<void> {
    if (this.drivers.get(driver.sink.name) === driver) this.drivers.delete(driver.sink.name);
    await driver.stop();
    await driver.sink.close().catch((err) => this.log.warn(`Sink ${driver.sink.name} did not close cleanly: ${describeError(err)}.`));
  }

  /** Starts a source in a new lane, from its checkpoint. */
  addLane(source: Source): void {
    const loaded = this.checkpoints.load(source.name, source.type, source.positionSchema);
    if (loaded.kind === "lost") {
      this.log.error(`The checkpoint of source ${source.name} is unusable (${loaded.reason}); it was moved to ${loaded.movedTo}, and the source reads again from the oldest position it can, so records since the lost position are shipped again rather than skipped.`);
    } else if (loaded.kind === "other-type") {
      this.log.warn(`Source ${source.name} is now of type ${source.type}; the checkpoint its ${loaded.type} predecessor left was moved to ${loaded.movedTo}, and the source starts as configured by start_at.`);
    }
    const start = { saved: loaded.kind === "saved" ? loaded.checkpoint.position : undefined, fromOldest: loaded.kind === "lost" };
    const lane = new SourceLane(source, start, this, this.driversFor(source.name), this.options.metrics, this.log, this.options.batch);
    this.lanes.set(source.name, lane);
    lane.start();
  }

  /** A lane leaves the pipeline (stopped, its last position saved); what it holds leaves the buffer. */
  retireLane(lane: SourceLane): void {
    this.lanes.delete(lane.name);
    lane.retire();
  }

  private driversFor(source: string): SinkDriver[] {
    return (this.routes.get(source) ?? []).map((name) => {
      const driver = this.drivers.get(name);
      if (driver === undefined) throw new NagareError("INTERNAL", `route from ${source} to unknown sink ${name}`);
      return driver;
    });
  }

  /** Gauges read at scrape time. */
  private collect(): void {
    const m = this.options.metrics;
    m.gauge("nagare_buffer_limit_bytes", "buffer.max_bytes: readers pause at this many bytes.").value = this.options.bufferMaxBytes;
    m.gauge("nagare_buffer_used_bytes", "Bytes of records read and not yet acknowledged and saved.").value = this.buffer.usedBytes;
    m.gauge("nagare_buffer_paused", "1 while sources are paused because the buffer is full.").value = this.buffer.isPaused ? 1 : 0;
    m.counter("nagare_buffer_paused_seconds_total", "Seconds sources spent paused because the buffer was full.").value = this.buffer.pausedMs / 1000;
    const now = performance.now();
    for (const lane of this.lanes.values()) {
      const labels = { source: lane.name };
      m.gauge("nagare_source_checkpoint_age_seconds", "Seconds since the saved position last moved while records were waiting (0 when idle).", labels).value = lane.checkpointAge(now);
      m.gauge("nagare_source_outstanding_batches", "Batches read and not yet acknowledged by every sink.", labels).value = lane.outstandingBatches;
      m.gauge("nagare_source_failing_seconds", "Seconds the source has been unable to read (permission denied, program or directory missing, server unreachable); 0 while it reads.", labels).value = lane.problem === undefined ? 0 : (now - lane.problem.since) / 1000;
      m.gauge("nagare_checkpoint_failing_seconds", "Seconds every save of the source's position has failed; 0 while saves succeed.", labels).value = lane.checkpointFailure === undefined ? 0 : (now - lane.checkpointFailure.since) / 1000;
    }
  }
}
