/**
 * Calibrates the journald source's per-record memory estimate: parses a real `journalctl -o export` stream
 * (20,000 generated entries written with systemd-journal-remote), keeps the records as the source builds them,
 * and prints wire bytes, heap and RSS per record next to the estimate used for buffer accounting.
 *   node_modules/.bin/bun scripts/bench/record-memory.ts
 */
import { ExportParser, type ExportEntry, type MalformedEntry } from "../../src/sources/journald/codec.ts";
import { journalctlExport, sequenceEntries, tempDir, writeJournal } from "../../test/support/journal.ts";

const tmp = tempDir();
await writeJournal(`${tmp.path}/j`, sequenceEntries(1, 20_000));
const data = await journalctlExport(`${tmp.path}/j`);
tmp.cleanup();

Bun.gc(true);
const before = process.memoryUsage();
const parser = new ExportParser({ maxFieldBytes: 1 << 21, maxEntryBytes: 1 << 22 });
const entries: ExportEntry[] = [];
const bad: MalformedEntry[] = [];
for (let i = 0; i < data.length; i += 16384) parser.push(data.subarray(i, i + 16384), entries, bad);
const records = entries.map((e) => ({
  timeSec: 1, timeNsec: 2, fields: e.fields, binaryFields: e.binaryFields, source: "j", stream: "journal",
  id: Bun.CryptoHasher.hash("md5", e.cursor ?? String(e.end), "hex"), size: e.bytes, position: { cursor: e.cursor, offset: e.end },
}));
entries.length = 0;
Bun.gc(true);
const after = process.memoryUsage();
const n = records.length;
const wire = records.reduce((sum, r) => sum + r.size, 0) / n;
let fields = 0;
for (const r of records) for (const _ in r.fields) fields++;
const estimate = 2 * wire + 50 * (fields / n) + 150;
console.log(`records ${n}: wire ${wire.toFixed(0)} B, fields ${(fields / n).toFixed(1)}, heap ${((after.heapUsed - before.heapUsed) / n).toFixed(0)} B, rss ${((after.rss - before.rss) / n).toFixed(0)} B, estimate ${estimate.toFixed(0)} B per record`);
