/**
 * One running source with everything the pipeline keeps for it: its batcher, its ack tracker, the sinks its
 * batches go to, and the bytes it holds in the buffer, from being read until a checkpoint covering them is
 * saved. It is also the source's context. The lane alone changes its accounting: the pipeline asks it for what
 * can be saved (`takeSavable`) and tells it how the save went (`saveDone`, `saveFailed`).
 */
import { Backoff, sleep } from "./backoff.ts";
import { Batch } from "./batch.ts";
import { Batcher, type BatchLimits } from "./batcher.ts";
import { AckTracker } from "./ack-tracker.ts";
import type { MemoryBuffer } from "./buffer.ts";
import type { Source, SourceContext, SourceProblem } from "./component.ts";
import { describeError } from "./errors.ts";
import type { LogRecord } from "./record.ts";
import type { SinkDriver } from "./sink-driver.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";

/** How often a problem that goes on is logged again (the first report and every change are logged at once). */
const PROBLEM_REPEAT_MS = 60_000;

/** A problem with when it began (performance.now()): health waits `max_stall` before it turns 503. */
export type Failing<T> = T & { since: number };

/** What a lane needs from the pipeline that runs it. */
export interface LaneHost {
  readonly buffer: MemoryBuffer;
  /** A batch of this lane is done: `bytes` more wait for the next checkpoint save. */
  batchDone(bytes: number): void;
}

/** Where the lane starts: the position loaded from its checkpoint, or none (`fromOldest` when it was lost). */
export interface LaneStart<Saved> {
  saved: Saved | undefined;
  fromOldest: boolean;
}

/** What one checkpoint pass takes from a lane: the position to save (if it moved) and the bytes it covers. */
export interface Savable<Saved> {
  position: Saved | undefined;
  bytes: number;
}

export class SourceLane<Mark = unknown, Saved = unknown> implements SourceContext<Saved, Mark> {
  readonly saved: Saved | undefined;
  readonly fromOldest: boolean;
  readonly log: Logger;
  /** The source ended on its own (a read-once input is exhausted). */
  finished = false;
  /** Why the source cannot read, since when; undefined while it reads. */
  problem: Failing<SourceProblem> | undefined;
  /** Why its position cannot be saved, since when; undefined while saves succeed. */
  checkpointFailure: Failing<{ file: string; reason: string }> | undefined;
  private readonly batcher: Batcher<Mark>;
  private readonly tracker = new AckTracker<Mark>();
  private stopping = false;
  /** Cuts short the wait before a crashed source is restarted. */
  private readonly stopSignal = new AbortController();
  /** Left the pipeline (a reload): its batches are withdrawn and no checkpoint is taken from it any more. */
  private retired = false;
  private running: Promise<void> | undefined;
  /** Bytes of done batches whose position is not saved yet; released from the buffer after the next save. */
  private unsaved = 0;
  /** When the saved position last moved, or the lane was last idle (performance.now()): checkpoint age. */
  private savedAt = performance.now();
  private seq = 0;
  private readonly readRecords;
  private readonly readBytes;
  private readonly onBatchDone = (batch: Batch<Mark>) => this.complete(batch);

  constructor(
    readonly source: Source<Mark, Saved>,
    start: LaneStart<Saved>,
    private readonly host: LaneHost,
    /** The sinks this source's batches go to; replaced by `routeTo` when a reload changes the routes. */
    private sinks: readonly SinkDriver[],
    readonly metrics: Metrics,
    log: Logger,
    limits: BatchLimits,
  ) {
    this.saved = start.saved;
    this.fromOldest = start.fromOldest;
    this.log = log.child({ component: source.name });
    this.batcher = new Batcher<Mark>(limits, (records, bytes) => this.seal(records, bytes));
    const labels = { source: source.name };
    this.readRecords = metrics.counter("nagare_source_read_records_total", "Records read by the source.", labels);
    this.readBytes = metrics.counter("nagare_source_read_bytes_total", "Bytes (buffer accounting) of records read by the source.", labels);
  }

  get name(): string {
    return this.source.name;
  }

  emit(record: LogRecord<Mark>): void {
    this.readRecords.value++;
    this.readBytes.value += record.size;
    this.host.buffer.reserve(record.size);
    this.batcher.add(record);
  }

  waitForRoom(): Promise<void> | undefined {
    return this.host.buffer.waitForRoom();
  }

  positionChanged(): void {
    this.tracker.markChanged();
  }

  reportProblem(problem: SourceProblem | undefined): void {
    const current = this.problem;
    if (problem === undefined) {
      if (current === undefined) return;
      this.problem = undefined;
      this.log.info(`Source ${this.name} reads again after ${seconds(performance.now() - current.since)} s (the problem was: it ${current.cause}).`);
      return;
    }
    this.problem = { ...problem, since: current?.since ?? performance.now() };
    const fix = problem.fix === undefined ? "" : ` To fix it: ${problem.fix}.`;
    // One throttle per cause: a new cause is logged at once, the same one again at most once a minute.
    this.log.limited("error", `problem:${problem.cause}`, `Source ${this.name} ${problem.cause}.${fix} It keeps trying; /health answers 503 once this has lasted health.max_stall.`, undefined, PROBLEM_REPEAT_MS);
  }

  endStream(stream: string): void {
    // Seal what the batcher holds, so the stream's last records are registered before it is ended.
    this.batcher.flush();
    this.tracker.end(stream);
  }

  /** Batches read and not yet settled by every sink. */
  get outstandingBatches(): number {
    return this.tracker.outstandingBatches;
  }

  /** Bytes of done batches waiting for the next checkpoint save. */
  get unsavedBytes(): number {
    return this.unsaved;
  }

  /** True while records of this source wait for a sink or for a checkpoint save. */
  get waiting(): boolean {
    return this.tracker.outstandingBatches > 0 || this.unsaved > 0;
  }

  /** Seconds since the saved position last moved while records were waiting (0 when idle). */
  checkpointAge(now: number): number {
    if (!this.waiting) this.savedAt = now;
    return (now - this.savedAt) / 1000;
  }

  /** Seals what the batcher holds, so that it is on its way to the sinks. */
  flush(): void {
    this.batcher.flush();
  }

  /** From now on, sealed batches go to these sinks. */
  routeTo(sinks: readonly SinkDriver[]): void {
    this.sinks = sinks;
  }

  /** Runs the source until it stops; a source that throws (a bug) is logged and restarted. */
  start(): void {
    this.running = this.run();
  }

  /** Stops reading, waits for the source to return and seals what it read. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopSignal.abort();
    this.source.stop();
    await this.running;
    this.batcher.flush();
  }

  /**
   * The checkpoint writer's turn: the position to save if a watermark moved, and the bytes done since the last
   * pass, which the writer releases once the save succeeded (`saveDone`) or gives back (`saveFailed`).
   */
  takeSavable(): Savable<Saved> {
    const bytes = this.unsaved;
    this.unsaved = 0;
    const position = this.tracker.takeChanged() ? this.source.checkpoint(this.tracker.watermarks()) : undefined;
    return { position, bytes };
  }

  /** The save of `taken` succeeded (or there was nothing to save): its bytes leave the buffer. */
  saveDone(taken: Savable<Saved>, file: string): void {
    if (taken.position !== undefined) {
      this.savedAt = performance.now();
      const failure = this.checkpointFailure;
      if (failure !== undefined) {
        this.checkpointFailure = undefined;
        this.log.info(`The position of source ${this.name} is saved again, to ${file}, after ${seconds(performance.now() - failure.since)} s of failed saves.`);
      }
    }
    this.host.buffer.release(taken.bytes);
  }

  /**
   * The save failed: the bytes stay counted, so that with checkpoints failing the buffer fills and reading
   * pauses rather than letting the replay window after a crash grow without bound; the next pass tries again.
   */
  saveFailed(taken: Savable<Saved>, file: string, err: unknown): void {
    // Retired while the save ran: nothing will save this lane again, so its bytes go now.
    if (this.retired) return this.host.buffer.release(taken.bytes);
    this.unsaved += taken.bytes;
    this.tracker.markChanged();
    const reason = describeError(err);
    this.checkpointFailure = { file, reason, since: this.checkpointFailure?.since ?? performance.now() };
    this.log.limited("error", "checkpoint-write", `Cannot save the position of source ${this.name}; reading pauses once the buffer is full, and after a restart it would re-read from the previous save. It keeps trying; /health answers 503 once this has lasted health.max_stall: ${reason}.`);
  }

  /**
   * The lane leaves the pipeline (after `stop` and a last checkpoint save): every batch it still has out is
   * marked withdrawn — its records are read again by the source's successor, or were meant for a source that
   * is gone — and its bytes leave the buffer as each sink lets go of it.
   */
  retire(): void {
    this.retired = true;
    for (const batch of this.tracker.outstanding()) batch.withdrawn = true;
    this.host.buffer.release(this.unsaved);
    this.unsaved = 0;
  }

  private complete(batch: Batch<Mark>): void {
    this.tracker.complete(batch);
    if (this.retired) {
      this.host.buffer.release(batch.bytes);
      return;
    }
    this.unsaved += batch.bytes;
    this.host.batchDone(batch.bytes);
  }

  private async run(): Promise<void> {
    const backoff = new Backoff(1000, 30_000);
    while (!this.stopping) {
      try {
        await this.source.run(this);
        if (!this.stopping) {
          this.log.info(`Source ${this.name} has read all of its input.`);
          this.finished = true;
          this.batcher.flush();
        }
        return;
      } catch (err) {
        this.log.limited("error", "source-crashed", `Source ${this.name} failed unexpectedly and will be restarted: ${describeError(err)}.`);
        await sleep(backoff.next(), this.stopSignal.signal);
      }
    }
  }

  private seal(records: LogRecord<Mark>[], bytes: number): void {
    const batch = new Batch<Mark>(this.name, this.seq++, records, bytes, this.sinks.map((d) => d.sink.name), this.onBatchDone);
    this.tracker.register(batch);
    for (const driver of this.sinks) driver.enqueue(batch as Batch);
  }
}

export function seconds(ms: number): number {
  return Math.round(ms / 100) / 10;
}
