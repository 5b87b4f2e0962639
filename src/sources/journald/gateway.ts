/**
 * Reads the export format from systemd-journal-gatewayd: `GET /entries?follow` with
 * `Accept: application/vnd.fdo.journal` and a `Range` header.
 *
 *   Range: entries=<cursor>           starts AT the cursor's entry (the source drops it if it is still there)
 *   Range: entries=:-1:2              the last two entries (a negative skip counts from one past the end)
 *   no Range                          everything from the head
 *
 * Observed with systemd 252: a cursor that no longer exists seeks to the next entry after it (so skipping
 * one entry blindly, `<cursor>:1:`, would lose a real entry); a cursor it cannot parse is answered with 400.
 * The response body is byte-identical to `journalctl -o export`.
 *
 * With `follow`, gatewayd sends nothing at all while the journal is quiet (it waits for changes in rounds of
 * 10 s and writes only entries: no keep-alive), so silence cannot tell a quiet journal from a stalled
 * connection. The reader therefore gives up after `idleTimeoutMs` without a byte and the source reconnects
 * from its last entry. That is cheap for gatewayd: it notices the closed connection at the end of its current
 * 10 s wait and frees it (observed with systemd 252: no thread or file descriptor is left behind).
 */
import { NagareError } from "../../core/errors.ts";
import { ExportParser, type ExportEntry, type MalformedEntry } from "./codec.ts";
import type { ChunkReader, ExportReader } from "./readers.ts";

const EXPORT_MIME = "application/vnd.fdo.journal";

export interface GatewayOptions {
  url: string;
  /** Start AT this cursor's entry (the caller drops it if it is still there); otherwise at the head. */
  cursor: string | undefined;
  /** Bound on connecting and receiving the response headers (for the tail probe: the whole answer). */
  timeoutMs: number;
  /** The stream ends (with `idle` set) when no byte arrived for this long while the source waited for one; 0: never. */
  idleTimeoutMs: number;
  signal: AbortSignal;
}

export class GatewayReader implements ExportReader {
  failure: string | undefined;
  /** The stream ended because nothing arrived for idleTimeoutMs (routine on a quiet journal), not by an error. */
  idle = false;
  private closed = false;
  private reading = false;
  /** One timer for the reader's life, re-armed by every read: no timer or promise per chunk. */
  private readonly idleTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    private readonly body: ChunkReader,
    private readonly abort: AbortController,
    idleTimeoutMs: number,
  ) {
    if (idleTimeoutMs <= 0) return;
    // Time spent paused (the buffer is full, read() is not called) is not silence from the gateway.
    this.idleTimer = setTimeout(() => {
      if (!this.reading || this.closed) return;
      this.idle = true;
      this.failure ??= `the gateway sent nothing for ${idleTimeoutMs} ms`;
      this.abort.abort();
    }, idleTimeoutMs);
  }

  static async open(o: GatewayOptions): Promise<GatewayReader> {
    const range = o.cursor === undefined ? undefined : `entries=${o.cursor}`;
    const abort = new AbortController();
    const body = await request(o, "?follow", range, abort);
    return new GatewayReader(body.getReader() as ChunkReader, abort, o.idleTimeoutMs);
  }

  async read(): Promise<Uint8Array | null> {
    this.idleTimer?.refresh();
    this.reading = true;
    try {
      const { value, done } = await this.body.read();
      if (!done && value !== undefined) return value;
      if (!this.closed) this.failure ??= "the gateway closed the stream";
    } catch (err) {
      if (!this.closed) this.failure ??= `the gateway stream failed: ${(err as Error).message}`;
    } finally {
      this.reading = false;
    }
    return null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.abort.abort();
    await this.body.cancel().catch(() => undefined);
  }
}

/**
 * The cursor of the newest entry, or undefined for an empty journal. "Start at the tail" then follows from
 * this cursor and drops its entry (`entries=<cursor>:1:` would repeat the entry when it is the last one).
 */
export async function gatewayTailCursor(o: Omit<GatewayOptions, "cursor">): Promise<string | undefined> {
  const abort = new AbortController();
  // Two entries are a small answer: a body that does not end within the timeout would hang the source's start.
  const timer = setTimeout(() => abort.abort(), o.timeoutMs);
  try {
    const body = await request(o, "", "entries=:-1:2", abort);
    const parser = new ExportParser({ maxFieldBytes: 64 << 20, maxEntryBytes: 128 << 20 });
    const entries: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    for await (const chunk of body) parser.push(chunk, entries, bad);
    parser.end(entries, bad);
    return entries.at(-1)?.cursor;
  } catch (err) {
    if (err instanceof NagareError) throw err;
    const why = abort.signal.aborted && !o.signal.aborted ? `the answer did not end within ${o.timeoutMs} ms` : (err as Error).message;
    throw new NagareError("SOURCE_FAILED", `cannot read the newest entry from the journal gateway at ${o.url}: ${why}`, { cause: err, retryable: true });
  } finally {
    clearTimeout(timer);
  }
}

async function request(o: Omit<GatewayOptions, "cursor">, query: string, range: string | undefined, abort: AbortController): Promise<ReadableStream<Uint8Array>> {
  const onStop = () => abort.abort();
  o.signal.addEventListener("abort", onStop, { once: true });
  const timer = setTimeout(() => abort.abort(), o.timeoutMs);
  const url = `${o.url.replace(/\/+$/, "")}/entries${query}`;
  try {
    const headers: Record<string, string> = { Accept: EXPORT_MIME };
    if (range !== undefined) headers.Range = range;
    // Bun's own idle timeout (5 min) is off: the reader has one that does not count time spent paused.
    const response = await fetch(url, { headers, signal: abort.signal, timeout: false });
    if (!response.ok || response.body === null) {
      const text = (await response.text().catch(() => "")).trim().slice(0, 200);
      throw new NagareError("SOURCE_FAILED", `${url} answered ${response.status} ${response.statusText}${text ? `: ${text}` : ""}`, { retryable: true });
    }
    return response.body;
  } catch (err) {
    if (err instanceof NagareError) throw err;
    const why = abort.signal.aborted && !o.signal.aborted ? `no answer within ${o.timeoutMs} ms` : (err as Error).message;
    throw new NagareError("SOURCE_FAILED", `cannot reach the journal gateway at ${url}: ${why}`, { cause: err, retryable: true });
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener("abort", onStop);
  }
}
