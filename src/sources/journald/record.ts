/**
 * A journal entry as a pipeline record. The id (MD5 of the cursor, hex) is computed only when a sink asks for
 * it, and the record is its own position token: the ack tracker keeps the last done record per stream and the
 * source reads the cursor and stream offset off it.
 */
import type { Fields, LogRecord } from "../../core/record.ts";

export const JOURNAL_STREAM = "journal";

export class JournalRecord implements LogRecord<JournalRecord> {
  readonly timeSec: number;
  readonly timeNsec: number;
  readonly stream = JOURNAL_STREAM;
  private cachedId: string | undefined;

  constructor(
    readonly source: string,
    readonly fields: Fields,
    readonly binaryFields: string[] | undefined,
    realtimeUs: number,
    readonly size: number,
    /** The entry's __CURSOR (the previous entry's when it has none). */
    readonly cursor: string | undefined,
    /** Stream offset just after the entry (meaningful for a saved export file). */
    readonly offset: number,
    /** What the id is derived from: the cursor, or the file identity and offset of an entry without one. */
    private readonly idKey: string,
  ) {
    this.timeSec = Math.floor(realtimeUs / 1e6);
    this.timeNsec = (realtimeUs % 1e6) * 1000;
  }

  get id(): string {
    return (this.cachedId ??= Bun.MD5.hash(this.idKey, "hex") as string);
  }

  get position(): JournalRecord {
    return this;
  }
}
