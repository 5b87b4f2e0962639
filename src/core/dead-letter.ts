/**
 * Records a destination refused permanently are appended, with the reason, to
 * `<data_dir>/dead-letter/<sink>.jsonl` (mode 0600) and synced before they count as done: a dead letter is
 * the only copy left, so it must be durable before the cursor moves past it.
 *
 * Each write (one batch's letters) lands whole exactly once. A write that fails part-way (a full disk) is cut
 * back to the size the file had before it and fails as retryable; the sink driver keeps the batch
 * unacknowledged and writes it again, so a retry can neither duplicate nor tear a line. The first write of a
 * process cuts off a torn last line a crash left behind (its batch was never acknowledged and comes again).
 *
 * The file rotates at `maxBytes`: `<sink>.jsonl` → `<sink>.jsonl.1` → … → `<sink>.jsonl.<maxFiles-1>`; the
 * oldest beyond that is deleted, which loses dead letters, so it is an ERROR and counted.
 */
import { createReadStream, existsSync } from "node:fs";
import { mkdir, open, rename, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { NagareError } from "./errors.ts";
import { encodeFieldsJson } from "./json.ts";
import { lastNewlineEnd, syncDirectory } from "./line-files.ts";
import type { LogRecord } from "./record.ts";
import type { Logger } from "../observe/log.ts";
import type { Labels, Metrics, Series } from "../observe/metrics.ts";

export interface DeadLetter {
  record: LogRecord;
  reason: string;
}

export interface DeadLetterOptions {
  /** A file is rotated before a write would take it past this size (a single larger write still lands whole). */
  maxBytes?: number;
  /** Files kept per sink, the current one included (at least 2). */
  maxFiles?: number;
  log?: Logger;
  metrics?: Metrics;
}

const DEAD_LETTER_DEFAULTS = { maxBytes: 100 * 1024 * 1024, maxFiles: 5 } as const;

export class DeadLetterFile {
  readonly dir: string;
  private readonly maxBytes: number;
  private readonly maxFiles: number;
  /** Per file, the write in progress: several batches of one sink may settle at once, their writes queue. */
  private readonly tails = new Map<string, Promise<void>>();
  /** Per file, the size a failed write must still be cut back to (set until the cut succeeded). */
  private readonly cutTo = new Map<string, number>();
  /** Files whose last line was checked for a tear in this process. */
  private readonly checked = new Set<string>();
  private readonly writeFailures: ((labels: Labels) => Series) | undefined;
  private readonly discarded: ((labels: Labels) => Series) | undefined;

  constructor(
    dataDir: string,
    private readonly options: DeadLetterOptions = {},
  ) {
    this.dir = join(dataDir, "dead-letter");
    this.maxBytes = options.maxBytes ?? DEAD_LETTER_DEFAULTS.maxBytes;
    this.maxFiles = Math.max(2, options.maxFiles ?? DEAD_LETTER_DEFAULTS.maxFiles);
    this.writeFailures = options.metrics?.declare("counter", "nagare_dead_letter_write_failures_total", "Dead-letter writes that failed and are retried (their batch stays unacknowledged).");
    this.discarded = options.metrics?.declare("counter", "nagare_dead_letter_discarded_records_total", "Dead letters deleted with the oldest rotated file to stay within dead_letter.max_files.");
  }

  /** Starts the sink's series at 0, so that Prometheus sees its first failure or deletion as an increase. */
  track(sink: string): void {
    this.writeFailures?.({ sink });
    this.discarded?.({ sink });
  }

  pathOf(sink: string): string {
    return join(this.dir, `${sink}.jsonl`);
  }

  /** Appends the letters as one write; rejects with a retryable NagareError when they are not all on disk. */
  write(sink: string, letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return Promise.resolve();
    const path = this.pathOf(sink);
    const text = Buffer.from(render(sink, letters));
    const run = (this.tails.get(path) ?? Promise.resolve()).then(() => this.append(sink, path, text));
    const tail = run.then(
      () => {},
      () => {},
    );
    this.tails.set(path, tail);
    void tail.then(() => {
      if (this.tails.get(path) === tail) this.tails.delete(path);
    });
    return run;
  }

  private async append(sink: string, path: string, text: Buffer): Promise<void> {
    let file: FileHandle | undefined;
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      file = await open(path, "a+", 0o600);
      let size = await this.repair(path, file);
      if (size > 0 && size + text.length > this.maxBytes) {
        await file.close();
        file = undefined;
        await this.rotate(sink, path);
        file = await open(path, "a+", 0o600);
        size = 0;
      }
      this.cutTo.set(path, size);
      await writeAll(file, text);
      await file.sync();
      this.cutTo.delete(path);
    } catch (err) {
      this.count(this.writeFailures, sink, 1);
      if (file !== undefined) await this.undo(path, file);
      throw new NagareError("SINK_UNAVAILABLE", `cannot write ${text.length} bytes of dead letters to ${path}`, { cause: err, retryable: true });
    } finally {
      await file?.close().catch(() => {});
    }
  }

  /** Cuts what a failed write left; if even that fails, the next write cuts it first. */
  private async undo(path: string, file: FileHandle): Promise<void> {
    const size = this.cutTo.get(path);
    if (size === undefined) return;
    try {
      await file.truncate(size);
      this.cutTo.delete(path);
    } catch {
      // kept in cutTo
    }
  }

  /** The file's size once what a failed write or a crash left behind is cut off. */
  private async repair(path: string, file: FileHandle): Promise<number> {
    let size = (await file.stat()).size;
    const cut = this.cutTo.get(path);
    if (cut !== undefined) {
      if (size > cut) await file.truncate(cut);
      this.cutTo.delete(path);
      return Math.min(size, cut);
    }
    if (this.checked.has(path)) return size;
    const whole = await lastNewlineEnd(file, size);
    if (whole < size) {
      await file.truncate(whole);
      this.options.log?.warn(`The dead-letter file ${path} ended in a torn line (the agent stopped during a write); the ${size - whole} torn bytes were cut off, and their records are written again whole.`);
      size = whole;
    }
    this.checked.add(path);
    return size;
  }

  private count(family: ((labels: Labels) => Series) | undefined, sink: string, n: number): void {
    if (family !== undefined) family({ sink }).value += n;
  }

  private async rotate(sink: string, path: string): Promise<void> {
    const oldest = `${path}.${this.maxFiles - 1}`;
    if (existsSync(oldest)) {
      const { lines, bytes } = await countLines(oldest);
      await unlink(oldest);
      this.count(this.discarded, sink, lines);
      this.options.log?.error(`The oldest dead-letter file of sink ${sink} was deleted to stay within dead_letter.max_files (${this.maxFiles}): ${lines} dead letters (${bytes} bytes) are lost.`, { file: oldest });
    }
    for (let n = this.maxFiles - 2; n >= 1; n--) {
      if (existsSync(`${path}.${n}`)) await rename(`${path}.${n}`, `${path}.${n + 1}`);
    }
    await rename(path, `${path}.1`);
    await syncDirectory(this.dir);
  }
}

function render(sink: string, letters: readonly DeadLetter[]): string {
  const at = JSON.stringify(new Date().toISOString());
  const sinkJson = JSON.stringify(sink);
  let text = "";
  for (const { record, reason } of letters) {
    text += `{"at":${at},"sink":${sinkJson},"source":${JSON.stringify(record.source)},"id":${JSON.stringify(record.id)},"reason":${JSON.stringify(reason)},"record":${encodeFieldsJson(record, undefined)}}\n`;
  }
  return text;
}

async function writeAll(file: FileHandle, bytes: Buffer): Promise<void> {
  for (let at = 0; at < bytes.length; ) {
    const { bytesWritten } = await file.write(bytes, at, bytes.length - at);
    if (bytesWritten === 0) throw new NagareError("SINK_UNAVAILABLE", "the file system accepted none of the bytes written");
    at += bytesWritten;
  }
}

async function countLines(path: string): Promise<{ lines: number; bytes: number }> {
  let lines = 0;
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
  }
  return { lines, bytes };
}
