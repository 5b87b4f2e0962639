/**
 * Micro-benchmark of the Journal Export Format parser: ~200,000 realistic entries fed in 64 KiB chunks.
 *
 *   bun scripts/bench/export-parser.ts [entries] [rounds] [utf8-every]
 *
 * utf8-every: put non-ASCII text into the MESSAGE of one entry in N (default 0: all ASCII, the common case).
 */
import { ExportParser, type ExportEntry, type MalformedEntry } from "../../src/sources/journald/codec.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const UTF8_EVERY = Number(process.argv[4] ?? 0);
const CHUNK = 64 * 1024;

const UNITS = ["nginx.service", "sshd.service", "cron.service", "kubelet.service", "containerd.service", "systemd-logind.service"];
const IDENTS = ["nginx", "sshd", "CRON", "kubelet", "containerd", "systemd-logind"];
const BOOT = "6c7c6013a26343b29e964691ff25d04c";
const MACHINE = "a91663387a90b89f185d4e860000001a";

function message(i: number): string {
  if (UTF8_EVERY > 0 && i % UTF8_EVERY === 0) return `żądanie ${i} — ошибка: ファイルが見つかりません`.padEnd(60, "…");
  const base = `request ${i} from 10.0.${i % 256}.${(i * 7) % 256} completed with status ${200 + (i % 5)} in ${i % 997}ms path=/api/v1/items/${i}`;
  return base.padEnd(120, " x").slice(0, 120);
}

function generate(n: number): Buffer {
  const parts: Buffer[] = [];
  let t = 1_700_000_000_000_000;
  for (let i = 0; i < n; i++) {
    t += 137;
    const u = i % UNITS.length;
    const seq = (0x4ece7 + i).toString(16);
    const text =
      `__CURSOR=s=739ad463348b4ceca5a9e69c95a3c93f;i=${seq};b=${BOOT};m=${(21415215982 + i).toString(16)};t=${t.toString(16)};x=d3e5610681098c10\n` +
      `__REALTIME_TIMESTAMP=${t}\n__MONOTONIC_TIMESTAMP=${21415215982 + i}\n_BOOT_ID=${BOOT}\n` +
      `_TRANSPORT=journal\n_SYSTEMD_UNIT=${UNITS[u]}\n_PID=${1000 + u * 17}\n_UID=0\n_HOSTNAME=ip-10-0-1-23\n` +
      `_MACHINE_ID=${MACHINE}\nPRIORITY=${i % 7}\nSYSLOG_IDENTIFIER=${IDENTS[u]}\nMESSAGE=${message(i)}\n`;
    parts.push(Buffer.from(text));
    if (i % 100 === 0) {
      const value = Buffer.from(`multi-line\nstack trace ${i}\n\tat frame\u0000`);
      const len = Buffer.alloc(8);
      len.writeUInt32LE(value.length, 0);
      parts.push(Buffer.from("STACK\n"), len, value, Buffer.from("\n"));
    }
    parts.push(Buffer.from("\n"));
  }
  return Buffer.concat(parts);
}

const stream = generate(ENTRIES);
const chunks: Buffer[] = [];
for (let o = 0; o < stream.length; o += CHUNK) chunks.push(stream.subarray(o, Math.min(o + CHUNK, stream.length)));

function run(): { entries: number; ms: number } {
  const parser = new ExportParser({ maxFieldBytes: 64 * 1024, maxEntryBytes: 1024 * 1024 });
  let out: ExportEntry[] = [];
  const bad: MalformedEntry[] = [];
  let entries = 0;
  const t0 = performance.now();
  for (const c of chunks) {
    parser.push(c, out, bad);
    entries += out.length;
    out = []; // a consumer takes each chunk's entries away
  }
  parser.end(out, bad);
  entries += out.length;
  const ms = performance.now() - t0;
  if (entries !== ENTRIES || bad.length !== 0) throw new Error(`parsed ${entries} entries, ${bad.length} malformed`);
  return { entries, ms };
}

const mb = stream.length / 1e6;
const utf8 = UTF8_EVERY > 0 ? `, non-ASCII message in 1 of ${UTF8_EVERY}` : "";
console.log(`${ENTRIES} entries, ${mb.toFixed(1)} MB, ${chunks.length} chunks of 64 KiB${utf8}`);
let best = Infinity;
for (let r = 0; r < ROUNDS; r++) {
  const { entries, ms } = run();
  best = Math.min(best, ms);
  console.log(`round ${r + 1}: ${Math.round((entries / ms) * 1000).toLocaleString("en")} entries/s, ${((mb / ms) * 1000).toFixed(0)} MB/s`);
}
console.log(`best: ${Math.round((ENTRIES / best) * 1000).toLocaleString("en")} entries/s, ${((mb / best) * 1000).toFixed(0)} MB/s`);
