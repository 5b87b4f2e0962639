/**
 * Writes each batch's encoded text to a file descriptor and remembers how far it got: when a write fails or
 * is short, the retry of the same batch continues after the last byte written instead of writing the whole
 * batch again (which would duplicate records and tear a line).
 *
 * The text is handed to write(2) as a string first: for a regular file the whole batch usually goes in one
 * call without a JS-side copy. Only a short write (a pipe, a full disk) turns the rest into a Buffer.
 */
import { write } from "node:fs";
import { sleep } from "./backoff.ts";
import type { Batch } from "./batch.ts";

interface PendingWrite {
  batch: Batch;
  text: string;
  /** The encoded bytes, made only after a short write; `written` counts bytes of it. */
  bytes: Buffer | undefined;
  written: number;
}

export class BatchWriter {
  private current: PendingWrite | undefined;

  /** Resolves when all of the batch's bytes are written; throws on a write error (call again to continue). */
  async write(fd: number, batch: Batch, encode: (batch: Batch) => string): Promise<void> {
    if (this.current?.batch !== batch) this.current = { batch, text: encode(batch), bytes: undefined, written: 0 };
    const pending = this.current;
    if (pending.bytes === undefined) {
      pending.written = await retryOnEagain(() => writeText(fd, pending.text));
      if (pending.written === Buffer.byteLength(pending.text)) {
        this.current = undefined;
        return;
      }
      pending.bytes = Buffer.from(pending.text);
    }
    const bytes = pending.bytes;
    while (pending.written < bytes.length) {
      pending.written += await retryOnEagain(() => writeBytes(fd, bytes, pending.written));
    }
    this.current = undefined;
  }
}

function writeText(fd: number, text: string): Promise<number> {
  return new Promise((resolve, reject) => write(fd, text, null, "utf8", (err, n) => (err ? reject(err) : resolve(n))));
}

function writeBytes(fd: number, data: Buffer, offset: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, data, offset, data.length - offset, null, (err, n) => (err ? reject(err) : resolve(n))));
}

/** A non-blocking descriptor that is full (EAGAIN) is waited on, not treated as an error. */
async function retryOnEagain(attempt: () => Promise<number>): Promise<number> {
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    try {
      return await attempt();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      await sleep(wait);
    }
  }
}
