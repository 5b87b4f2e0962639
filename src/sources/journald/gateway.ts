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
 */
import { NagareError } from "../../core/errors.ts";
import { ExportParser, type ExportEntry, type MalformedEntry } from "./codec.ts";
import type { ChunkReader, ExportReader } from "./readers.ts";

const EXPORT_MIME = "application/vnd.fdo.journal";

export interface GatewayOptions {
  url: string;
  /** Start AT this cursor's entry (the caller drops it if it is still there); otherwise at the head. */
  cursor: string | undefined;
  /** Bound on connecting and receiving the response headers. */
  timeoutMs: number;
  signal: AbortSignal;
}

export class GatewayReader implements ExportReader {
  failure: string | undefined;
  private closed = false;

  private constructor(
    private readonly body: ChunkReader,
    private readonly abort: AbortController,
  ) {}

  static async open(o: GatewayOptions): Promise<GatewayReader> {
    const range = o.cursor === undefined ? undefined : `entries=${o.cursor}`;
    const abort = new AbortController();
    const body = await request(o, "?follow", range, abort);
    return new GatewayReader(body.getReader() as ChunkReader, abort);
  }

  async read(): Promise<Uint8Array | null> {
    try {
      const { value, done } = await this.body.read();
      if (!done && value !== undefined) return value;
      if (!this.closed) this.failure ??= "the gateway closed the stream";
    } catch (err) {
      if (!this.closed) this.failure ??= `the gateway stream failed: ${(err as Error).message}`;
    }
    return null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
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
  const body = await request(o, "", "entries=:-1:2", abort);
  const parser = new ExportParser({ maxFieldBytes: 64 << 20, maxEntryBytes: 128 << 20 });
  const entries: ExportEntry[] = [];
  const bad: MalformedEntry[] = [];
  for await (const chunk of body) parser.push(chunk, entries, bad);
  parser.end(entries, bad);
  return entries.at(-1)?.cursor;
}

async function request(o: Omit<GatewayOptions, "cursor">, query: string, range: string | undefined, abort: AbortController): Promise<ReadableStream<Uint8Array>> {
  const onStop = () => abort.abort();
  o.signal.addEventListener("abort", onStop, { once: true });
  const timer = setTimeout(() => abort.abort(), o.timeoutMs);
  const url = `${o.url.replace(/\/+$/, "")}/entries${query}`;
  try {
    const headers: Record<string, string> = { Accept: EXPORT_MIME };
    if (range !== undefined) headers.Range = range;
    const response = await fetch(url, { headers, signal: abort.signal });
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
