/**
 * The journald source: reads the journal export format from journalctl, systemd-journal-gatewayd or a saved
 * export file, and resumes after the last acknowledged entry. A reader that dies is restarted from the last
 * entry this source has already handed to the pipeline (those records are in memory and will be delivered);
 * after a crash of the agent itself, reading resumes from the saved, acknowledged cursor. Entries of excluded
 * units (nagare's own, see units.ts) are read past without being emitted; the saved cursor moves past them once
 * everything emitted before them is acknowledged.
 */
import { Backoff, sleep } from "../../core/backoff.ts";
import type { Source, SourceContext, SourceProblem } from "../../core/component.ts";
import { journalctlProblem, judgeProbe, missingProgram, noJournalFilesMessage, openProblem } from "./access.ts";
import { ExportParser, type ExportEntry, type MalformedEntry } from "./codec.ts";
import type { JournaldSourceConfig } from "./config.ts";
import { ExportFileReader, JournalctlReader, probeJournal, type ExportReader, type FileIdentity } from "./readers.ts";
import { GatewayReader, gatewayTailCursor } from "./gateway.ts";
import { journaldPosition, type JournalPosition } from "./position.ts";
import { JOURNAL_STREAM, JournalRecord } from "./record.ts";
import { readOwnUnit, UnitExclusion } from "./units.ts";


/** A journal without files is named again at most this often (the reader does not restart while it waits). */
const NO_FILES_REPEAT_MS = 10 * 60_000;

/** The records are their own marks: the ack tracker keeps the last done JournalRecord, the source reads its cursor. */
type JournalContext = SourceContext<JournalPosition, JournalRecord>;

export class JournaldSource implements Source<JournalRecord, JournalPosition> {
  readonly type = "journald";
  readonly positionSchema = journaldPosition;
  private stopped = false;
  private readonly stopSignal = new AbortController();
  private reader: ExportReader | undefined;
  /** Restart point: the last entry handed to the pipeline (cursor, and stream offset in file mode). */
  private resumeCursor: string | undefined;
  private resumeOffset = 0;
  private fileIdentity: FileIdentity | undefined;
  private initialised = false;
  /** start_at: tail was turned into a cursor once; a restart must not skip to the tail again. */
  private tailResolved = false;
  private counters: ReturnType<JournaldSource["makeCounters"]> | undefined;
  private exclusion: UnitExclusion | undefined;
  /** The last record emitted, and whether entries were skipped after it (then their position is saved once it is done). */
  private lastEmitted: JournalRecord | undefined;
  private skippedSince = false;
  private skippedCursor: string | undefined;
  private skippedOffset = 0;
  /** The entry a restarted journalctl or gateway stream starts with, which was read before: it is dropped. */
  private expectCursor: string | undefined;

  constructor(readonly name: string, private readonly config: JournaldSourceConfig) {}

  async run(ctx: JournalContext): Promise<void> {
    const counters = (this.counters ??= this.makeCounters(ctx));
    if (!this.initialised) {
      this.restore(ctx);
      this.exclusion = this.excludeUnits(ctx);
    }
    const backoff = new Backoff(500, this.config.restart_backoff_max);
    while (!this.stopped) {
      const opened = await this.open(ctx);
      if (this.stopped) {
        if ("reader" in opened) await opened.reader.close();
        return;
      }
      if ("problem" in opened) {
        ctx.reportProblem(opened.problem);
        const delay = backoff.next();
        ctx.log.debug(`Source ${this.name} tries again in ${Math.round(delay)} ms.`);
        await sleep(delay, this.stopSignal.signal);
        continue;
      }
      ctx.reportProblem(opened.partial);
      const reader = (this.reader = opened.reader);
      const emitted = await this.pump(reader, ctx);
      await reader.close();
      this.reader = undefined;
      if (this.stopped) return;
      if (this.config.file !== undefined && reader.failure === undefined) return;
      if (reader instanceof GatewayReader && reader.idle) {
        // gatewayd sends nothing while the journal is quiet: on a quiet host this happens every idle_timeout.
        counters.idleReconnects.value++;
        backoff.reset();
        ctx.log.debug(`Source ${this.name} heard nothing from the gateway for ${this.config.idle_timeout} ms and reconnects after the last entry read.`);
        continue;
      }
      counters.restarts.value++;
      if (emitted > 0) backoff.reset();
      const delay = backoff.next();
      const failure = reader.failure ?? "stream ended";
      const problem = reader instanceof JournalctlReader ? journalctlProblem(failure, this.config.directory) : undefined;
      if (problem !== undefined) ctx.reportProblem(problem);
      else ctx.log.limited("warn", "reader-lost", `Source ${this.name} lost its journal reader (${failure}); it restarts in ${Math.round(delay)} ms after the last entry read, nothing is lost.`);
      await sleep(delay, this.stopSignal.signal);
    }
  }

  stop(): void {
    this.stopped = true;
    this.stopSignal.abort();
    void this.reader?.close();
  }

  checkpoint(watermarks: ReadonlyMap<string, JournalRecord>): JournalPosition | undefined {
    const mark = watermarks.get(JOURNAL_STREAM);
    // Skipped entries after the last emitted record are done as soon as it is (or at once, when none was emitted).
    if (this.skippedSince && mark === this.lastEmitted) return this.position(this.skippedCursor, this.skippedOffset);
    if (mark === undefined) return undefined;
    return this.position(mark.cursor, mark.offset);
  }

  private position(cursor: string | undefined, offset: number): JournalPosition {
    const at = cursor === undefined ? {} : { cursor };
    if (this.config.file === undefined || this.fileIdentity === undefined) return at;
    const { path, dev, ino } = this.fileIdentity;
    return { ...at, file: { path, dev, ino, offset } };
  }

  private restore(ctx: JournalContext): void {
    this.initialised = true;
    const saved = ctx.saved;
    this.resumeCursor = saved?.cursor;
    this.resumeOffset = saved?.file?.offset ?? 0;
  }

  /**
   * Starts a reader, or says why it cannot: a problem the operator must fix, which the caller reports and
   * retries. `partial`: the reader runs but sees only part of the journal.
   */
  private async open(ctx: JournalContext): Promise<{ reader: ExportReader; partial?: SourceProblem } | { problem: SourceProblem }> {
    const c = this.config;
    try {
      if (c.file !== undefined) return { reader: await this.openFile(ctx, c.file) };
      if (c.url !== undefined) return { reader: await this.openGateway(ctx, c.url) };
      return await this.openJournalctl(ctx);
    } catch (err) {
      return { problem: openProblem(err, { url: c.url, file: c.file }) };
    }
  }

  /** Whether the journal's end is still to be found: start_at tail, on the first start without a saved position. */
  private needsTailCursor(ctx: JournalContext): boolean {
    return this.resumeCursor === undefined && this.config.start_at === "tail" && !ctx.fromOldest && !this.tailResolved;
  }

  private async openGateway(ctx: JournalContext, url: string): Promise<ExportReader> {
    const c = this.config;
    const gateway = { url, timeoutMs: c.connect_timeout, idleTimeoutMs: c.idle_timeout, signal: this.stopSignal.signal };
    if (this.needsTailCursor(ctx)) {
      // Follow from the newest entry's cursor, dropping that entry: exact even while the journal grows.
      this.resumeCursor = await gatewayTailCursor(gateway);
      this.tailResolved = true;
    }
    const reader = await GatewayReader.open({ ...gateway, cursor: this.resumeCursor });
    this.logStart(ctx, url);
    return reader;
  }

  /** journalctl is asked first whether (and how much of) the journal it may read, and where it ends. */
  private async openJournalctl(ctx: JournalContext): Promise<{ reader: ExportReader; partial?: SourceProblem } | { problem: SourceProblem }> {
    const c = this.config;
    const missing = missingProgram(c.journalctl);
    if (missing !== undefined) return { problem: missing };
    const journalctl = { program: c.journalctl, directory: c.directory, matches: c.matches };
    const needCursor = this.needsTailCursor(ctx);
    const probe = await probeJournal(journalctl, c.connect_timeout);
    const verdict = judgeProbe(probe, c.directory, needCursor);
    if (verdict.problem !== undefined) return { problem: verdict.problem };
    if (verdict.noFiles) ctx.log.limited("warn", "no-journal-files", noJournalFilesMessage(this.name, c.directory), undefined, NO_FILES_REPEAT_MS);
    if (needCursor) {
      this.resumeCursor = probe.cursor;
      this.tailResolved = true;
    }
    const reader = new JournalctlReader({ ...journalctl, cursor: this.resumeCursor }, (line) => ctx.log.limited("warn", "journalctl-stderr", `journalctl says: ${line}`));
    this.logStart(ctx, c.directory === undefined ? "journalctl" : `journalctl from ${c.directory}`);
    return { reader, partial: verdict.partial };
  }

  private logStart(ctx: JournalContext, through: string): void {
    const from = this.resumeCursor === undefined ? "the head" : `cursor ${this.resumeCursor}`;
    ctx.log.info(`Source ${this.name} reads the journal from ${from} through ${through}.`);
  }

  private async openFile(ctx: JournalContext, path: string): Promise<ExportReader> {
    const saved = ctx.saved?.file;
    const probe = await ExportFileReader.open(path, 0);
    const same = saved !== undefined && saved.dev === probe.identity.dev && saved.ino === probe.identity.ino && saved.offset <= probe.identity.size;
    if (saved !== undefined && !same && this.resumeOffset === saved.offset) {
      ctx.log.warn(`Source ${this.name}: ${path} is not the file the saved position belongs to (it was replaced or truncated); reading it from the start.`);
      this.resumeOffset = 0;
      this.resumeCursor = undefined;
    }
    this.fileIdentity = probe.identity;
    await probe.close();
    const reader = await ExportFileReader.open(path, this.resumeOffset);
    ctx.log.info(`Source ${this.name} reads the saved export stream ${path} once, from byte ${this.resumeOffset} of ${probe.identity.size}.`);
    return reader;
  }

  /** Reads until the reader ends or the source stops; returns the number of entries handed on. */
  private async pump(reader: ExportReader, ctx: JournalContext): Promise<number> {
    const parser = new ExportParser({ maxFieldBytes: this.config.max_field_bytes, maxEntryBytes: this.config.max_entry_bytes });
    const entries: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    // journalctl --cursor and a gateway Range print the saved entry itself first; a file resumes after it.
    this.expectCursor = this.config.file === undefined ? this.resumeCursor : undefined;
    let emitted = 0;
    const streamBase = this.resumeOffset;
    while (!this.stopped) {
      const wait = ctx.waitForRoom();
      if (wait !== undefined) {
        await Promise.race([wait, sleep(60_000, this.stopSignal.signal)]);
        continue;
      }
      const chunk = await reader.read();
      // Only a file has a real end; a journalctl or gateway stream that stops mid-entry is re-read instead.
      if (chunk !== null) parser.push(chunk, entries, bad);
      else if (this.config.file !== undefined && reader.failure === undefined && !this.stopped) parser.end(entries, bad);
      if (bad.length > 0) this.reportMalformed(bad, ctx);
      if (entries.length > 0) emitted += this.handOn(entries, streamBase, ctx);
      if (chunk === null) break;
    }
    return emitted;
  }

  /** Emits one chunk's entries, less the resume entry and those of excluded units; returns how many it emitted. */
  private handOn(entries: ExportEntry[], streamBase: number, ctx: JournalContext): number {
    const exclusion = this.exclusion;
    let emitted = 0;
    let skipped = 0;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (this.expectCursor !== undefined) {
        const resumed = entry.cursor === this.expectCursor;
        if (!resumed) this.reportGap(this.expectCursor, ctx);
        this.expectCursor = undefined;
        if (resumed) continue;
      }
      if (exclusion !== undefined && exclusion.excludes(entry.fields)) {
        this.skip(entry, streamBase + entry.end);
        skipped++;
        continue;
      }
      ctx.emit(this.toRecord(entry, streamBase + entry.end));
      emitted++;
    }
    entries.length = 0;
    if (skipped > 0) {
      this.counters!.excluded.value += skipped;
      ctx.positionChanged();
    }
    return emitted;
  }

  private toRecord(entry: ExportEntry, offset: number): JournalRecord {
    const realtimeUs = entry.realtimeUs === undefined ? Date.now() * 1000 : Number(entry.realtimeUs);
    const cursor = entry.cursor ?? this.resumeCursor;
    if (entry.truncated) {
      entry.fields._nagare_truncated = true;
      this.counters!.truncated.value++;
    }
    this.resumeCursor = cursor;
    this.resumeOffset = offset;
    const idKey = entry.cursor ?? `${this.fileIdentity?.dev}:${this.fileIdentity?.ino}:${offset}`;
    const record = new JournalRecord(this.name, entry.fields, entry.binaryFields, realtimeUs, memoryEstimate(entry), cursor, offset, idKey);
    this.lastEmitted = record;
    this.skippedSince = false;
    return record;
  }

  /** An entry of an excluded unit: not shipped, but reading (and, once what came before is done, the checkpoint) moves past it. */
  private skip(entry: ExportEntry, offset: number): void {
    this.resumeCursor = entry.cursor ?? this.resumeCursor;
    this.resumeOffset = offset;
    this.skippedSince = true;
    this.skippedCursor = this.resumeCursor;
    this.skippedOffset = offset;
  }

  private excludeUnits(ctx: JournalContext): UnitExclusion | undefined {
    const own = this.config.exclude_own_unit ? readOwnUnit() : undefined;
    const exclusion = UnitExclusion.of(this.config, own);
    if (exclusion !== undefined) {
      const where = own === undefined ? "" : ` (${own} is the unit the agent runs in)`;
      ctx.log.info(`Source ${this.name} skips journal entries written by ${exclusion.units.join(", ")}${where}.`);
    }
    return exclusion;
  }

  private reportMalformed(bad: MalformedEntry[], ctx: JournalContext): void {
    this.counters!.malformed.value += bad.length;
    for (const b of bad) {
      const where = b.cursor === undefined ? `after cursor ${this.resumeCursor ?? "(none yet)"}` : `with cursor ${b.cursor}`;
      ctx.log.limited("warn", "malformed", `Source ${this.name} skipped a malformed journal entry ${where}: ${b.reason}.`, { bytes: b.bytes });
    }
    bad.length = 0;
  }

  private reportGap(expected: string, ctx: JournalContext): void {
    this.counters!.gaps.value++;
    ctx.log.warn(`Source ${this.name} resumed at cursor ${expected}, but that entry is no longer in the journal (vacuumed or rotated away); reading continues with the oldest entry after it.`);
  }

  private makeCounters(ctx: JournalContext) {
    const labels = { source: this.name };
    return {
      malformed: ctx.metrics.counter("nagare_journal_malformed_entries_total", "Journal entries skipped because they do not follow the export format.", labels),
      truncated: ctx.metrics.counter("nagare_journal_truncated_entries_total", "Journal entries with a value cut at max_field_bytes or max_entry_bytes.", labels),
      gaps: ctx.metrics.counter("nagare_journal_gaps_total", "Resumes whose saved entry was no longer in the journal.", labels),
      restarts: ctx.metrics.counter("nagare_journal_reader_restarts_total", "Times journalctl or the gateway connection was restarted.", labels),
      idleReconnects: ctx.metrics.counter("nagare_journal_idle_reconnects_total", "Times the gateway stream brought nothing for idle_timeout and was reconnected (routine on a quiet journal).", labels),
      excluded: ctx.metrics.counter("nagare_source_excluded_records_total", "Entries skipped because an excluded unit (by default nagare's own) wrote them.", labels),
    };
  }
}

/**
 * Bytes a record occupies in memory while it waits in the buffer, so that `buffer.max_bytes` bounds resident
 * memory rather than wire bytes. Calibrated on Bun 1.4 (scripts/bench/record-memory.ts, JournalRecord with its
 * id): the entry's text is held once (one latin1 string per entry, the values are slices of it), plus objects
 * per field and per record — heap per record 1,190 B for a 510-byte entry of 12 fields, 1,670 B for a 735-byte
 * one of 21 fields, 3,600 B with a 2 KiB message, and about a quarter more in resident memory (what the
 * allocator keeps beside the heap). One and a half times the wire size plus 32 bytes per field and 350 per
 * record matches the resident size.
 */
export function memoryEstimate(entry: ExportEntry): number {
  let fields = 0;
  for (const _ in entry.fields) fields++;
  return recordMemory(entry.bytes, fields);
}

/** The estimate for an entry of `wireBytes` in the export format with `fields` fields. */
export function recordMemory(wireBytes: number, fields: number): number {
  return Math.ceil(1.5 * wireBytes) + 32 * fields + 350;
}
