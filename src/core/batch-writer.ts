/**
 * Writes each batch's encoded bytes to a file descriptor and remembers how far it got: when a write fails
 * half-way, the retry of the same batch continues after the last byte written instead of writing the whole
 * batch again (which would duplicate records and tear a line).
 */
import { write } from "node:fs";
import { sleep } from "./backoff.ts";
import type { Batch } from "./batch.ts";

export class BatchWriter {
  private current: { batch: Batch; data: Buffer; written: number } | undefined;

  /** Resolves when all of the batch's bytes are written; throws on a write error (call again to continue). */
  async write(fd: number, batch: Batch, encode: (batch: Batch) => Buffer): Promise<void> {
    if (this.current?.batch !== batch) this.current = { batch, data: encode(batch), written: 0 };
    const pending = this.current;
    while (pending.written < pending.data.length) {
      pending.written += await writeSome(fd, pending.data, pending.written);
    }
    this.current = undefined;
  }
}

/** One write(2); a non-blocking descriptor that is full (EAGAIN) is waited on, not treated as an error. */
async function writeSome(fd: number, data: Buffer, offset: number): Promise<number> {
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    try {
      return await new Promise<number>((resolve, reject) =>
        write(fd, data, offset, data.length - offset, null, (err, n) => (err ? reject(err) : resolve(n))),
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      await sleep(wait);
    }
  }
}
