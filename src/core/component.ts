/**
 * The contracts between the pipeline and its components. Sources and sinks live in their own folders and
 * implement these; the pipeline never knows which kind it runs.
 */
import type { ZodType } from "zod";
import type { Delivery } from "./delivery.ts";
import type { NagareError } from "./errors.ts";
import type { LogRecord } from "./record.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";

/** Why a source cannot do its job right now, worded for the operator who has to fix it. */
export interface SourceProblem {
  /** What is wrong, as it reads after "Source NAME": "cannot start reading the journal: …". */
  readonly cause: string;
  /** What the operator can do about it, as an instruction: "add the user nagare to the systemd-journal group". */
  readonly fix?: string;
}

export interface SourceContext<Saved = unknown, Mark = unknown> {
  /** The position saved for this source by an earlier run (checked against the source's schema), or undefined. */
  readonly saved: Saved | undefined;
  /**
   * The saved position was lost (an unusable checkpoint file): start from the oldest position the source can
   * read, whatever start_at says, so that nothing after the lost position is skipped.
   */
  readonly fromOldest: boolean;
  /** Hands one record to the pipeline. It counts against the buffer from now until it is done. */
  emit(record: LogRecord<Mark>): void;
  /** Undefined when the source may keep reading; otherwise resolves when the buffer has room again. */
  waitForRoom(): Promise<void> | undefined;
  /** The stream will emit nothing more (its input is gone): what the pipeline keeps for it can go. */
  endStream(stream: string): void;
  /**
   * The position to save changed without a record being done (e.g. the source read past input it does not emit):
   * ask the source for a checkpoint at the next save even if no watermark moved.
   */
  positionChanged(): void;
  /**
   * The source cannot read (permission denied, a program or directory missing, a server unreachable), or, with
   * undefined, it can again. Call it on every attempt: the pipeline logs the problem (an ERROR when it appears or
   * its cause changes, then at most once a minute while it lasts, an INFO when it clears) and /health answers
   * 503 once it has lasted `health.max_stall`. A retry loop that only repeats the same problem logs nothing more.
   */
  reportProblem(problem: SourceProblem | undefined): void;
  readonly log: Logger;
  readonly metrics: Metrics;
}

/**
 * A source, generic over the position its records carry (`Mark`, what the ack tracker keeps per stream) and the
 * position it saves (`Saved`, what its checkpoint holds, checked against `positionSchema` when loaded).
 */
export interface Source<Mark = unknown, Saved = unknown> {
  readonly name: string;
  readonly type: string;
  /** The shape of the saved position: a checkpoint that does not fit it is treated as lost, never trusted. */
  readonly positionSchema: ZodType<Saved>;
  /**
   * Reads until `stop()` is called, or until the input is exhausted for read-once sources. Failures of the
   * underlying reader are handled inside (restart with backoff); a rejection is a bug.
   */
  run(ctx: SourceContext<Saved, Mark>): Promise<void>;
  /** Stops reading as soon as possible; `run` then resolves. */
  stop(): void;
  /**
   * The JSON-serialisable position to save, given the acknowledged watermark of each stream, or undefined
   * when there is nothing new to save.
   */
  checkpoint(watermarks: ReadonlyMap<string, Mark>): Saved | undefined;
}

/** A record the destination refused permanently; it goes to the dead-letter file and counts as done. */
export interface RejectedRecord {
  record: LogRecord;
  reason: string;
}

export type SendResult =
  /** The destination acknowledged the batch; `rejected` lists records it refused permanently, if any. */
  | { status: "delivered"; rejected?: RejectedRecord[] }
  /**
   * The attempt failed, and `error.retryable` decides what follows. Retryable: the same batch is sent again
   * after a backoff, for as long as it takes (a destination down, a wrong password: nothing is lost while the
   * operator fixes it). Not retryable (SINK_REJECTED): the batch can never be delivered as it is, and every one
   * of its records goes to the dead-letter file with the error as the reason. Dead-lettering takes records out
   * of the pipeline for good, so a sink answers so only for a refusal that no retry and no fix of the
   * destination can turn, and only when none of the batch was acknowledged; refusals of some records of a
   * batch are listed in "delivered" instead.
   */
  | { status: "failed"; error: NagareError };

export interface Sink<State = unknown> {
  readonly name: string;
  readonly type: string;
  /**
   * How many batches the driver may have in flight at once. 1 for a sink that must finish one batch before it
   * starts the next (a file); more for a network destination, so its round trip costs latency, not throughput.
   * The sink itself keeps batches that it was handed in this order in that order on the wire.
   */
  readonly maxInFlight: number;
  /**
   * One attempt to deliver a batch: resolves once the destination acknowledged it, or with why it did not.
   * The driver calls it again with the same Delivery after a retryable failure; `delivery.state` keeps what the
   * sink prepared and what was already acknowledged. Never throws (a throw counts as a retryable INTERNAL
   * failure); when `delivery.signal` is aborted (shutdown) it stops waiting and answers a retryable failure.
   */
  send(delivery: Delivery<State>): Promise<SendResult>;
  /**
   * Optional: the sink calls `wake` whenever it learns on its own that the destination answers again (a
   * background probe got through), so that a batch waiting on its retry backoff is sent at once.
   */
  onReady?(wake: () => void): void;
  /** Releases connections and file descriptors. */
  close(): Promise<void>;
}
