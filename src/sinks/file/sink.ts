/**
 * Appends records as JSON lines to a file. The file is opened on first use (opening a fifo waits for its
 * reader without blocking the agent) and reopened after an error. Missing parent directories are created
 * (0750) when the file is opened, as an operator expects of a log writer: a fresh host needs no `mkdir` first.
 * A batch is delivered once its bytes were written — and fsynced, with `fsync: true`. A partial last line left
 * by an agent killed mid-write is cut off before appending: its record was not acknowledged, so it is written
 * again whole.
 *
 * Rotation by rename (logrotate's default `create`) is followed: before each new batch the path is looked up,
 * and when it no longer names the open file, the file is closed and the path opened anew. Lines written in
 * between land in the renamed file, so nothing is lost; a batch is never split across the two files.
 */
import { mkdir, open, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { writeBatch, type PendingWrite } from "../../core/batch-writer.ts";
import type { Batch } from "../../core/batch.ts";
import type { SendResult, Sink } from "../../core/component.ts";
import type { Delivery } from "../../core/delivery.ts";
import { NagareError } from "../../core/errors.ts";
import { encodeJsonLines, JsonWriter } from "../../core/json.ts";
import { lastNewlineEnd } from "../../core/line-files.ts";
import type { FileSinkConfig } from "./config.ts";
import type { Logger } from "../../observe/log.ts";

export class FileSink implements Sink<PendingWrite> {
  readonly type = "file";
  /** One batch at a time: lines of the next batch must not interleave with a batch being written. */
  readonly maxInFlight = 1;
  private file: FileHandle | undefined;
  /** Device and inode of the open file, to notice that its path was renamed away (rotation). */
  private identity: { dev: number; ino: number } | undefined;
  private readonly encode: (batch: Batch) => Buffer;

  constructor(
    readonly name: string,
    private readonly config: FileSinkConfig,
    private readonly log: Logger,
  ) {
    const idField = config.id_field;
    const writer = new JsonWriter();
    this.encode = (batch) => encodeJsonLines(batch.records, idField, writer);
  }

  async send(delivery: Delivery<PendingWrite>): Promise<SendResult> {
    try {
      if (this.file !== undefined && (delivery.state?.written ?? 0) === 0 && (await this.rotatedAway())) await this.close();
      this.file ??= await this.open();
      await writeBatch(this.file.fd, delivery, this.encode);
      if (this.config.fsync) await this.file.sync();
      return { status: "delivered" };
    } catch (err) {
      await this.close();
      // A full disk, a missing permission, a hung mount: all heal or are fixed by the operator; no record is at fault.
      return { status: "failed", error: new NagareError("SINK_UNAVAILABLE", `cannot append to ${this.config.path}`, { cause: err, retryable: true }) };
    }
  }

  private async open(): Promise<FileHandle> {
    const path = this.config.path;
    if ((await mkdir(dirname(path), { recursive: true, mode: 0o750 })) !== undefined) {
      this.log.info(`Sink ${this.name} created the directory ${dirname(path)} (mode 0750) for ${path}.`);
    }
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile() && st.size > 0) {
      const removed = await cutTornLine(path, st.size);
      if (removed > 0) this.log.warn(`Sink ${this.name} removed a partial last line of ${removed} bytes from ${path}, left by an interrupted write; its record is written again whole.`);
    }
    const file = await open(path, "a", 0o640);
    const opened = await file.stat();
    this.identity = { dev: opened.dev, ino: opened.ino };
    return file;
  }

  /** True when the path names another file than the open one, or none (renamed or removed). */
  private async rotatedAway(): Promise<boolean> {
    const st = await stat(this.config.path).catch(() => undefined);
    return st === undefined || st.dev !== this.identity?.dev || st.ino !== this.identity.ino;
  }

  async close(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    this.identity = undefined;
    await file?.close().catch(() => undefined);
  }
}

/** Truncates a file after its last newline; returns the number of bytes removed. */
async function cutTornLine(path: string, size: number): Promise<number> {
  const file = await open(path, "r+");
  try {
    const keep = await lastNewlineEnd(file, size);
    if (keep < size) await file.truncate(keep);
    return size - keep;
  } finally {
    await file.close();
  }
}
