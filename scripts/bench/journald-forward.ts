/**
 * Benchmark: a 200,000-entry journal shipped by the built binary to the forward test server (in this process,
 * loopback, require_ack, the default configuration otherwise), once with immediate acks and once with every ack
 * sent 200 ms late while the server keeps reading. Prints two rates for each: end to end (process start to the
 * last position checkpointed, so it includes the 200 ms the last ack takes) and steady (entries acknowledged per
 * second between 20 % and 80 % of the journal: the throughput a distant server leaves), peak RSS, and the
 * ratios late / at once (target ≥ 0.8: acks in flight cost latency, not throughput).
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
async function ship(ackDelayMs: number): Promise<{ ms: number; steadyMs: number; hwm: number; all: number[] }> {
  const runs: { ms: number; steadyMs: number; hwm: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const server = await startForwardServer({ countOnly: true, behaviour: { ackDelayMs } });
    try {
      const data = join(work, "forward-data");
      const config = join(work, "forward.yaml");
      writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  fwd: { type: forward, inputs: [journal], servers: [{ host: 127.0.0.1, port: ${server.port} }], tag: "journal.{{field.SYSLOG_IDENTIFIER}}", require_ack: true }\n`);
      const acked = () => server.chunks.reduce((n, c) => n + (c.acked ? c.count : 0), 0);
      const steady = (async () => {
        await server.waitFor(() => acked() >= 0.2 * ENTRIES, 120_000);
        const from = performance.now();
        await server.waitFor(() => acked() >= 0.8 * ENTRIES, 120_000);
        return performance.now() - from;
      })();
      const run = await runToCheckpoint(config, data, tail);
      runs.push({ ...run, steadyMs: (await steady) / 0.6 });
    } finally {
      await server.stop();
    }
  }
  runs.sort((a, b) => a.ms - b.ms);
  return { ms: runs[0]!.ms, steadyMs: Math.min(...runs.map((r) => r.steadyMs)), hwm: Math.max(...runs.map((r) => r.hwm)), all: runs.map((r) => r.ms) };
}

const immediate = await ship(0);
const late = await ship(200);
const MiB = (b: number) => (b / 1048576).toFixed(1);
console.log(`[${PROFILE} entries] journal -> forward test server (counting chunks, require_ack), process start included`);
for (const [name, r] of [["acks at once", immediate], ["acks 200 ms late", late]] as const) {
  console.log(`  ${name}: ${rate(r.ms)} entries/s end to end (runs ${r.all.map((ms) => ms.toFixed(0)).join(", ")} ms), ${rate(r.steadyMs)} entries/s steady, peak RSS ${MiB(r.hwm)} MiB`);
}
console.log(`  late / at once: ${(immediate.ms / late.ms).toFixed(2)} end to end, ${(immediate.steadyMs / late.steadyMs).toFixed(2)} steady (target: at least 0.8)`);
