/**
 * Calibrates the journald source's per-record memory estimate: parses a real `journalctl -o export` stream
 * (20,000 generated entries written with systemd-journal-remote: the small 8-field entries, the ~20-field ones,
 * and entries with a 2 KiB message), keeps the records as the source builds them (JournalRecord, id computed as
 * a sink asks for it), and prints wire bytes, heap and RSS per record next to the estimate used for buffer
 * accounting.
 *   node_modules/.bin/bun scripts/bench/record-memory.ts
 */
import { ExportParser, type ExportEntry, type MalformedEntry } from "../../src/sources/journald/codec.ts";
import { JournalRecord } from "../../src/sources/journald/record.ts";
import { memoryEstimate } from "../../src/sources/journald/source.ts";
import { journalctlExport, sequenceEntries, writeJournal, type ExportField } from "../../test/support/journal.ts";
import { tempDir } from "../../test/support/util.ts";

const SMALL = new Set(["__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "_PID", "_HOSTNAME", "_SYSTEMD_UNIT", "_TRANSPORT", "SEQ", "MESSAGE"]);
const profiles: [string, () => ExportField[][]][] = [
  ["small (8 fields)", () => sequenceEntries(1, 20_000).map((e) => e.filter(([k]) => SMALL.has(k)))],
  ["wide (20 fields)", () => sequenceEntries(1, 20_000)],
  ["2 KiB messages", () => sequenceEntries(1, 20_000, { messageBytes: 2048 })],
];

for (const [name, make] of profiles) {
  const tmp = tempDir();
  await writeJournal(`${tmp.path}/j`, make());
  const data = await journalctlExport(`${tmp.path}/j`);
  tmp.cleanup();
  Bun.gc(true);
  const before = process.memoryUsage();
  const parser = new ExportParser({ maxFieldBytes: 1 << 21, maxEntryBytes: 1 << 22 });
  const entries: ExportEntry[] = [];
  const bad: MalformedEntry[] = [];
  const records: JournalRecord[] = [];
  for (let i = 0; i < data.length; i += 256 * 1024) {
    parser.push(data.subarray(i, i + 256 * 1024), entries, bad);
    for (const e of entries) records.push(new JournalRecord("j", e.fields, e.binaryFields, Number(e.realtimeUs), memoryEstimate(e), e.cursor, e.end, e.cursor ?? ""));
    entries.length = 0;
  }
  for (const r of records) void r.id;
  Bun.gc(true);
  const after = process.memoryUsage();
  const n = records.length;
  const estimate = records.reduce((sum, r) => sum + r.size, 0) / n;
  console.log(`${name}: ${n} records, heap ${((after.heapUsed - before.heapUsed) / n).toFixed(0)} B, rss ${((after.rss - before.rss) / n).toFixed(0)} B, estimate ${estimate.toFixed(0)} B per record`);
  records.length = 0;
}
