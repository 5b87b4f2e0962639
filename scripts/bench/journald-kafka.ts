/**
 * Benchmark: a 200,000-entry journal shipped by the built binary to librdkafka's mock cluster (3 brokers on
 * loopback, topic of 3 partitions, no key, acks=all, the default configuration otherwise), next to
 * `journalctl -o export` on the same journal in the same run; then the same with 10 ms added to every broker
 * response (the mock's rtt). Prints entries/s, the ratio to journalctl (target ≥ 0.35 for small entries), the
 * ratio with and without the round trip (target ≥ 0.8) and peak RSS (target ≤ 160 MiB).
 *   bash scripts/bench/journald-kafka.sh [entries] [small|wide] [key-template]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startMockCluster } from "../../test/support/kafka.ts";
import { benchJournal, journalctlRate, runToCheckpoint, type JournalProfile } from "./common.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const PROFILES: JournalProfile[] = process.argv[3] === undefined ? ["small", "wide"] : [process.argv[3] as JournalProfile];
const KEY = process.argv[4];
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const rate = (ms: number) => Math.round(ENTRIES / (ms / 1000));

/** Best of RUNS runs against a fresh mock cluster each, with `rttMs` added to every broker response. */
async function shipToMock(work: string, journal: string, tail: string, rttMs: number): Promise<{ ms: number; hwm: number; all: number[] }> {
  const runs: { ms: number; hwm: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const cluster = await startMockCluster({ brokers: 3, topics: [{ name: "logs", partitions: 3 }] });
    try {
      if (rttMs > 0) await cluster.command(`rtt -1 ${rttMs}`);
      const data = join(work, "kafka-data");
      const config = join(work, "kafka.yaml");
      const key = KEY === undefined ? "" : `, key: "${KEY}"`;
      writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  kafka: { type: kafka, inputs: [journal], brokers: [${cluster.brokers.map((b) => `"${b}"`).join(", ")}], topic: logs${key} }\n`);
      runs.push(await runToCheckpoint(config, data, tail));
    } finally {
      await cluster.stop();
    }
  }
  runs.sort((a, b) => a.ms - b.ms);
  return { ms: runs[0]!.ms, hwm: Math.max(...runs.map((r) => r.hwm)), all: runs.map((r) => r.ms) };
}

for (const profile of PROFILES) {
  const { work, journal, tail } = await benchJournal(ENTRIES, profile);
  const journalctl = await journalctlRate(journal);
  const direct = await shipToMock(work, journal, tail, 0);
  const distant = await shipToMock(work, journal, tail, 10);
  console.log(`[${profile} entries] journal -> kafka mock (3 brokers, 3 partitions, acks=all${KEY ? `, key ${KEY}` : ", no key"}), process start included`);
  console.log(`  journalctl -o export: ${rate(journalctl.ms)} entries/s`);
  console.log(`  nagare: ${rate(direct.ms)} entries/s (runs ${direct.all.map((ms) => ms.toFixed(0)).join(", ")} ms), peak RSS ${(direct.hwm / 1048576).toFixed(1)} MiB`);
  console.log(`  nagare, 10 ms broker round trip: ${rate(distant.ms)} entries/s (runs ${distant.all.map((ms) => ms.toFixed(0)).join(", ")} ms), peak RSS ${(distant.hwm / 1048576).toFixed(1)} MiB`);
  console.log(`  nagare / journalctl: ${(journalctl.ms / direct.ms).toFixed(2)}${profile === "small" ? " (target: at least 0.35)" : ""}`);
  console.log(`  with 10 ms round trip / without: ${(direct.ms / distant.ms).toFixed(2)} (target: at least 0.8)`);
}
