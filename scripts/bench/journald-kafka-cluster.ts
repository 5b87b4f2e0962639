/**
 * Benchmark: the 200,000-entry journals shipped by the built binary to a real Apache Kafka cluster (three KRaft
 * nodes on this machine, replication factor 3, min.insync.replicas 2, acks=all, idempotent producer, the default
 * configuration otherwise), next to `journalctl -o export` on the same journal in the same run. Prints entries/s,
 * the ratio to journalctl and peak RSS. The brokers share the two cores with the agent, so this measures the
 * whole setup, not the agent alone (scripts/bench/journald-kafka.sh does that against librdkafka's mock).
 *   bash scripts/bench/journald-kafka-cluster.sh [entries] [small|wide]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startKafkaCluster } from "../../test/support/kafka-cluster.ts";
import { benchJournal, journalctlRate, runToCheckpoint, type JournalProfile } from "./common.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const PROFILES: JournalProfile[] = process.argv[3] === undefined ? ["small", "wide"] : [process.argv[3] as JournalProfile];
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const rate = (ms: number) => Math.round(ENTRIES / (ms / 1000));

const cluster = await startKafkaCluster();
try {
  let topics = 0;
  for (const profile of PROFILES) {
    const { work, journal, tail } = await benchJournal(ENTRIES, profile);
    const journalctl = await journalctlRate(journal);
    const runs: { ms: number; hwm: number }[] = [];
    for (let i = 0; i < RUNS; i++) {
      const topic = `bench-${++topics}`;
      await cluster.createTopic(topic, { partitions: 3 });
      const data = join(work, "cluster-data");
      const config = join(work, "cluster.yaml");
      writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  kafka: { type: kafka, inputs: [journal], brokers: [${cluster.bootstrap.split(",").map((b) => `"${b}"`).join(", ")}], topic: ${topic} }\n`);
      runs.push(await runToCheckpoint(config, data, tail));
    }
    runs.sort((a, b) => a.ms - b.ms);
    console.log(`[${profile} entries] journal -> real Kafka cluster (3 KRaft nodes on this machine, rf 3, acks=all, idempotent), process start included`);
    console.log(`  journalctl -o export: ${rate(journalctl.ms)} entries/s`);
    console.log(`  nagare: ${rate(runs[0]!.ms)} entries/s (runs ${runs.map((r) => r.ms.toFixed(0)).join(", ")} ms), peak RSS ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB`);
    console.log(`  nagare / journalctl: ${(journalctl.ms / runs[0]!.ms).toFixed(2)}`);
  }
} finally {
  await cluster.stop();
}
