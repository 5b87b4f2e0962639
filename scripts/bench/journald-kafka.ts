/**
 * Benchmark: the 200,000-entry benchmark journal (see journald.ts) shipped by the built binary to librdkafka's
 * mock cluster (3 brokers, loopback) with acks=all and the default buffer. Prints entries/s (every batch
 * acknowledged and the position checkpointed) and peak RSS.
 *   bash scripts/bench/journald-kafka.sh [entries] [key-template]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startMockCluster } from "../../test/support/kafka.ts";
import { benchJournal, runToCheckpoint } from "./common.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const KEY = process.argv[3];
const { work, journal, tail } = await benchJournal(ENTRIES);

const runs: { ms: number; hwm: number }[] = [];
for (let i = 0; i < 3; i++) {
  const cluster = await startMockCluster({ brokers: 3, topics: [{ name: "logs", partitions: 6 }] });
  try {
    const data = join(work, "kafka-data");
    const config = join(work, "kafka.yaml");
    const key = KEY === undefined ? "" : `, key: "${KEY}"`;
    writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  kafka: { type: kafka, inputs: [journal], brokers: [${cluster.brokers.map((b) => `"${b}"`).join(", ")}], topic: logs, acks: all${key} }\n`);
    runs.push(await runToCheckpoint(config, data, tail));
  } finally {
    await cluster.stop();
  }
}
runs.sort((a, b) => a.ms - b.ms);
const best = runs[0]!;
console.log(`nagare journal -> kafka (mock cluster, acks=all${KEY ? `, key ${KEY}` : ", no key"}): ${ENTRIES} entries in ${best.ms.toFixed(0)} ms = ${Math.round(ENTRIES / (best.ms / 1000))} entries/s, process start included; runs ${runs.map((r) => r.ms.toFixed(0)).join(", ")} ms`);
console.log(`peak RSS (VmHWM): ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB (target: under 200 MB)`);
