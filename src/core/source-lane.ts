/**
 * One running source with what the pipeline keeps for it: its batcher, its ack tracker, the sinks its
 * batches go to, and the bytes it holds in the buffer. It is also the source's context.
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
  /** Undefined while reading may go on; a promise while the pipeline holds all sources (during a reload). */
  held(): Promise<void> | undefined;
  batchDone(lane: SourceLane, batch: Batch): void;
}

export class SourceLane implements SourceContext {
  readonly batcher: Batcher;
  readonly tracker = new AckTracker();
  readonly log: Logger;
  /** The source ended on its own (a read-once input is exhausted). */
  finished = false;
  /** stop() was called: the lane is being retired. */
  stopping = false;
  running: Promise<void> | undefined;
  /** Bytes of done batches whose position is not saved yet; released from the buffer after the next save. */
  unsavedBytes = 0;
  /** Bytes of sealed batches not yet done. */
  outstandingBytes = 0;
  /** When the saved position last moved (performance.now()), for the checkpoint age metric. */
  savedAt = performance.now();
  /** Why the source cannot read, since when; undefined while it reads. */
  problem: Failing<SourceProblem> | undefined;
  /** Why its position cannot be saved, since when; undefined while saves succeed. */
  checkpointFailure: Failing<{ file: string; reason: string }> | undefined;
  private seq = 0;
  private readonly readRecords;
  private readonly readBytes;
  private readonly onBatchDone = (batch: Batch) => this.host.batchDone(this, batch);

  constructor(
    readonly source: Source,
    readonly saved: unknown,
    readonly fromOldest: boolean,
    private readonly host: LaneHost,
    /** The sinks this source's batches go to; replaced when a reload changes the routes. */
    public sinks: readonly SinkDriver[],
    readonly metrics: Metrics,
    log: Logger,
    limits: BatchLimits,
  ) {
    this.log = log.child({ component: source.name });
    this.batcher = new Batcher(limits, (records, bytes) => this.seal(records, bytes));
    const labels = { source: source.name };
    this.readRecords = metrics.counter("nagare_source_read_records_total", "Records read by the source.", labels);
    this.readBytes = metrics.counter("nagare_source_read_bytes_total", "Bytes (buffer accounting) of records read by the source.", labels);
  }

  emit(record: LogRecord): void {
    this.readRecords.value++;
    this.readBytes.value += record.size;
    this.host.buffer.reserve(record.size);
    this.batcher.add(record);
  }

  waitForRoom(): Promise<void> | undefined {
    return this.host.held() ?? this.host.buffer.waitForRoom();
  }

  positionChanged(): void {
    this.tracker.markChanged();
  }

  reportProblem(problem: SourceProblem | undefined): void {
    const name = this.source.name;
    const current = this.problem;
    if (problem === undefined) {
      if (current === undefined) return;
      this.problem = undefined;
      this.log.info(`Source ${name} reads again after ${seconds(performance.now() - current.since)} s (the problem was: it ${current.cause}).`);
      return;
    }
    this.problem = { ...problem, since: current?.since ?? performance.now() };
    const fix = problem.fix === undefined ? "" : ` To fix it: ${problem.fix}.`;
    // One throttle per cause: a new cause is logged at once, the same one again at most once a minute.
    this.log.limited("error", `problem:${problem.cause}`, `Source ${name} ${problem.cause}.${fix} It keeps trying; /health answers 503 once this has lasted health.max_stall.`, undefined, PROBLEM_REPEAT_MS);
  }

  endStream(stream: string): void {
    // Seal what the batcher holds, so the stream's last records are registered before it is ended.
    this.batcher.flush();
    this.tracker.end(stream);
  }

  /** Runs the source until it stops; a source that throws (a bug) is logged and restarted. */
  start(): void {
    this.running = this.run();
  }

  /** Stops reading, waits for the source to return and seals what it read. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.source.stop();
    await this.running;
    this.batcher.flush();
  }

  private async run(): Promise<void> {
    const backoff = new Backoff(1000, 30_000);
    while (!this.stopping) {
      try {
        await this.source.run(this);
        if (!this.stopping) {
          this.log.info(`Source ${this.source.name} has read all of its input.`);
          this.finished = true;
          this.batcher.flush();
        }
        return;
      } catch (err) {
        this.log.limited("error", "source-crashed", `Source ${this.source.name} failed unexpectedly and will be restarted: ${describeError(err)}.`);
        await sleep(backoff.next());
      }
    }
  }

  private seal(records: LogRecord[], bytes: number): void {
    const batch = new Batch(this.source.name, this.seq++, records, bytes, this.sinks.map((d) => d.sink.name), this.onBatchDone);
    this.tracker.register(batch);
    this.outstandingBytes += bytes;
    for (const driver of this.sinks) driver.enqueue(batch);
  }
}

export function seconds(ms: number): number {
  return Math.round(ms / 100) / 10;
}
