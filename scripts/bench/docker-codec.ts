/**
 * Micro-benchmark of the container log codec: ~200-byte json-file lines (and CRI lines) split out of 64 KiB
 * chunks, decoded and pushed through the partial-line merger, as the tailer will do.
 *
 *   bun scripts/bench/docker-codec.ts [lines] [rounds] [partial-every]
 *
 * partial-every: split one line in N into three partial pieces (default 0: none, the common case).
 */
import { decodeLine, PartialMerger, type LogFormat } from "../../src/sources/docker/codec.ts";
import { criEntry, jsonFileEntry } from "../../test/support/docker-writer.ts";

const LINES = Number(process.argv[2] ?? 1_000_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const PARTIAL_EVERY = Number(process.argv[4] ?? 0);
const CHUNK = 64 * 1024;

function message(i: number): string {
  const base = `${new Date(1_700_000_000_000 + i).toISOString()} INFO request ${i} from 10.0.${i % 256}.${(i * 7) % 256} status=${200 + (i % 5)} dur=${i % 997}ms path=/api/v1/items/${i}`;
  return base.padEnd(129, " x").slice(0, 129); // json-file lines of ~200 bytes
}

function generate(format: LogFormat): Buffer {
  const parts: Buffer[] = [];
  let t = 1_700_000_000_123_456_789n;
  for (let i = 0; i < LINES; i++) {
    t += 1_234_567n;
    const s = t.toString();
    const time = `2023-11-14T22:13:${String(20 + (i % 40)).padStart(2, "0")}.${s.slice(-9)}Z`;
    const stream = i % 10 === 0 ? "stderr" : "stdout";
    const msg = Buffer.from(message(i));
    const pieces = PARTIAL_EVERY > 0 && i % PARTIAL_EVERY === 0 ? [msg.subarray(0, 40), msg.subarray(40, 80), msg.subarray(80)] : [msg];
    pieces.forEach((p, k) => {
      const last = k === pieces.length - 1;
      if (format === "cri") parts.push(criEntry(p, stream, last ? "F" : "P", time));
      else parts.push(jsonFileEntry(last ? Buffer.concat([p, Buffer.from("\n")]) : p, stream, time));
    });
  }
  return Buffer.concat(parts);
}

function run(chunks: Buffer[], format: LogFormat): { records: number; lines: number; ms: number } {
  const merger = new PartialMerger(1024 * 1024);
  let records = 0;
  let lines = 0;
  let carry: Buffer | undefined;
  let offset = 0;
  const t0 = performance.now();
  for (const c0 of chunks) {
    const c = carry === undefined ? c0 : Buffer.concat([carry, c0]);
    let pos = 0;
    for (;;) {
      const nl = c.indexOf(10, pos);
      if (nl < 0) break;
      const r = merger.push(decodeLine(c.subarray(pos, nl), format), offset + nl + 1);
      lines++;
      if (r !== undefined) records++;
      pos = nl + 1;
    }
    offset += pos;
    carry = pos < c.length ? c.subarray(pos) : undefined;
  }
  const ms = performance.now() - t0;
  return { records, lines, ms };
}

for (const format of ["json-file", "cri"] as const) {
  const file = generate(format);
  const chunks: Buffer[] = [];
  for (let o = 0; o < file.length; o += CHUNK) chunks.push(file.subarray(o, Math.min(o + CHUNK, file.length)));
  const mb = file.length / 1e6;
  const physical = file.toString("latin1").split("\n").length - 1;
  console.log(`${format}: ${LINES} records, ${physical} lines, ${(file.length / physical).toFixed(0)} bytes/line, ${mb.toFixed(1)} MB`);
  let best = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const { records, lines, ms } = run(chunks, format);
    if (records !== LINES || lines !== physical) throw new Error(`got ${records} records from ${lines} lines`);
    const rate = (lines / ms) * 1000;
    best = Math.max(best, rate);
    console.log(`  round ${r + 1}: ${Math.round(rate).toLocaleString("en")} lines/s, ${((mb / ms) * 1000).toFixed(0)} MB/s`);
  }
  console.log(`  best: ${Math.round(best).toLocaleString("en")} lines/s`);
}
