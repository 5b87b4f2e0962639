/**
 * Turns acknowledgements, which may arrive in any order, into a contiguous watermark per stream: the position
 * of the last record such that it and every record before it in the same stream are done. Checkpoints are
 * taken from these watermarks, never from what was merely read.
 */
import type { Batch } from "./batch.ts";

/** One batch's last position in one stream, waiting for that batch to be done. */
interface Mark<P> {
  position: P;
  done: boolean;
}

class StreamMarks<P> {
  constructor(readonly name: string) {}
  items: Mark<P>[] = [];
  /** The source said the stream ended: forget it once nothing of it is pending. */
  ended = false;
  head = 0;
  watermark: P | undefined = undefined;

  /** Pops done marks off the front; true when the watermark moved. */
  advance(): boolean {
    let moved = false;
    while (this.head < this.items.length) {
      const mark = this.items[this.head]!;
      if (!mark.done) break;
      this.watermark = mark.position;
      this.head++;
      moved = true;
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return moved;
  }

  get pending(): number {
    return this.items.length - this.head;
  }
}

interface BatchMarks<P> {
  streams: StreamMarks<P>[];
  marks: Mark<P>[];
}

/** Generic over the position type of the source's records (`P`), which it hands back as watermarks. */
export class AckTracker<P = unknown> {
  private readonly streams = new Map<string, StreamMarks<P>>();
  /** The marks each outstanding batch must clear, kept here rather than on the batch: only the tracker reads them. */
  private readonly pending = new Map<Batch<P>, BatchMarks<P>>();
  private changed = false;

  /** Records the batch's last position in each stream it touches, in read order. Call when sealing. */
  register(batch: Batch<P>): void {
    const streams: StreamMarks<P>[] = [];
    const marks: Mark<P>[] = [];
    const records = batch.records;
    // Walk backwards: the first record seen per stream is that stream's last position in the batch.
    for (let i = records.length - 1; i >= 0; i--) {
      const record = records[i]!;
      let stream = this.streams.get(record.stream);
      if (stream === undefined) {
        stream = new StreamMarks<P>(record.stream);
        this.streams.set(record.stream, stream);
      }
      if (streams.includes(stream)) continue;
      const mark: Mark<P> = { position: record.position, done: false };
      stream.items.push(mark);
      streams.push(stream);
      marks.push(mark);
    }
    this.pending.set(batch, { streams, marks });
  }

  /** The batch is done (every sink settled it); move the watermarks it unblocks. */
  complete(batch: Batch<P>): void {
    const entry = this.pending.get(batch);
    if (entry === undefined) return;
    this.pending.delete(batch);
    const { streams, marks } = entry;
    for (const mark of marks) mark.done = true;
    for (const stream of streams) {
      if (stream.advance()) this.changed = true;
      if (stream.ended && stream.pending === 0) this.streams.delete(stream.name);
    }
  }

  /** Watermark per stream, for streams that have one. */
  watermarks(): Map<string, P> {
    const out = new Map<string, P>();
    for (const [name, stream] of this.streams) if (stream.watermark !== undefined) out.set(name, stream.watermark);
    return out;
  }

  /** True once after any watermark moved; the checkpoint writer uses it to skip unchanged sources. */
  takeChanged(): boolean {
    const changed = this.changed;
    this.changed = false;
    return changed;
  }

  /** A failed checkpoint write: make the next writer pass save this source again. */
  markChanged(): void {
    this.changed = true;
  }

  /** Batches registered but not yet done. */
  get outstandingBatches(): number {
    return this.pending.size;
  }

  /** The batches registered but not yet done, oldest first. */
  outstanding(): IterableIterator<Batch<P>> {
    return this.pending.keys();
  }

  /**
   * The stream will have no more records (a container that went away): its state is dropped once its last
   * records are done, so an agent that sees containers come and go does not grow. Its final watermark is not
   * reported; the source no longer needs it. Call after the stream's last records are registered.
   */
  end(stream: string): void {
    const marks = this.streams.get(stream);
    if (marks === undefined) return;
    if (marks.pending === 0) this.streams.delete(stream);
    else marks.ended = true;
  }

  /** Streams tracked now (for tests and metrics). */
  get streamCount(): number {
    return this.streams.size;
  }
}
