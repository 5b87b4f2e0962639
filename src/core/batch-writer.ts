/**
 * Writes a batch's encoded bytes to a file descriptor and remembers, in the batch's delivery, how far it got:
 * when a write fails or is short, the retry of the same batch continues after the last byte written instead of
 * writing the whole batch again (which would duplicate records and tear a line).
 */
import { write } from "node:fs";
import { sleep } from "./backoff.ts";
import type { Batch } from "./batch.ts";
import type { Delivery } from "./delivery.ts";

/** What a delivery keeps between attempts: the encoded bytes and how many of them are written. */
export interface PendingWrite {
  bytes: Buffer;
  written: number;
}

/** Resolves when all of the batch's bytes are written; throws on a write error (the retry continues). */
export async function writeBatch(fd: number, delivery: Delivery<PendingWrite>, encode: (batch: Batch) => Buffer): Promise<void> {
  if (delivery.state === undefined) {
    delivery.state = { bytes: encode(delivery.batch), written: 0 };
    delivery.charge(delivery.state.bytes.length);
  }
  const pending = delivery.state;
  const bytes = pending.bytes;
  while (pending.written < bytes.length) {
    pending.written += await retryOnEagain(() => writeBytes(fd, bytes, pending.written));
  }
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
