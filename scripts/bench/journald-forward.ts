/**
 * Benchmark: a 200,000-entry journal shipped by the built binary to the forward test server (in this process,
 * loopback, require_ack, the default configuration otherwise), once with immediate acks and once with every ack
 * sent 200 ms late while the server keeps reading. Prints entries/s (every chunk acknowledged and the position
 * checkpointed), peak RSS, and the ratio of the two rates (target ≥ 0.8: acks in flight, not stop-and-wait).
 *   bash scripts/bench/journald-forward.sh [entries] [small|wide]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startForwardServer } from "../../test/support/forward-server.ts";
import { benchJournal, runToCheckpoint, type JournalProfile } from "./common.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const PROFILE = (process.argv[3] ?? "small") as JournalProfile;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const { work, journal, tail } = await benchJournal(ENTRIES, PROFILE);
const rate = (ms: number) => Math.round(ENTRIES / (ms / 1000));

/** Best of RUNS runs against a test server that acks each chunk `ackDelayMs` after reading it. */
async function ship(ackDelayMs: number, countOnly: boolean): Promise<{ ms: number; hwm: number; all: number[] }> {
  const runs: { ms: number; hwm: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const server = await startForwardServer({ countOnly, behaviour: { ackDelayMs } });
    try {
      const data = join(work, "forward-data");
      const config = join(work, "forward.yaml");
      writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  fwd: { type: forward, inputs: [journal], servers: [{ host: 127.0.0.1, port: ${server.port} }], tag: "journal.{{field.SYSLOG_IDENTIFIER}}", require_ack: true }\n`);
      runs.push(await runToCheckpoint(config, data, tail));
    } finally {
      await server.stop();
    }
  }
  runs.sort((a, b) => a.ms - b.ms);
  return { ms: runs[0]!.ms, hwm: Math.max(...runs.map((r) => r.hwm)), all: runs.map((r) => r.ms) };
}

const immediate = await ship(0, true);
const late = await ship(200, true);
const MiB = (b: number) => (b / 1048576).toFixed(1);
console.log(`[${PROFILE} entries] journal -> forward test server (counting chunks, require_ack), process start included`);
console.log(`  acks at once: ${rate(immediate.ms)} entries/s (runs ${immediate.all.map((ms) => ms.toFixed(0)).join(", ")} ms), peak RSS ${MiB(immediate.hwm)} MiB`);
console.log(`  acks 200 ms late: ${rate(late.ms)} entries/s (runs ${late.all.map((ms) => ms.toFixed(0)).join(", ")} ms), peak RSS ${MiB(late.hwm)} MiB`);
console.log(`  late / at once: ${(immediate.ms / late.ms).toFixed(2)} (target: at least 0.8)`);
