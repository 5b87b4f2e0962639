/**
 * Benchmark: the 200,000-entry benchmark journal (see journald.ts) shipped by the built binary to librdkafka's
 * mock cluster (3 brokers, loopback) with acks=all and the default buffer. Prints entries/s (every batch
 * acknowledged and the position checkpointed) and peak RSS.
 *   bash scripts/bench/journald-kafka.sh [entries] [key-template]
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryOf, sequenceEntries, writeJournal } from "../../test/support/journal.ts";
import { startMockCluster } from "../../test/support/kafka.ts";

const ROOT = join(import.meta.dir, "..", "..");
const ENTRIES = Number(process.argv[2] ?? 200_000);
const KEY = process.argv[3];
const WORK = join(ROOT, ".bench", `journald-${ENTRIES}`);
const JOURNAL = join(WORK, "journal");

if (!existsSync(join(WORK, "ready"))) {
  rmSync(WORK, { recursive: true, force: true });
  for (let from = 1; from <= ENTRIES; from += 50_000) await writeJournal(JOURNAL, sequenceEntries(from, Math.min(50_000, ENTRIES - from + 1), { messageBytes: 120 }));
  writeFileSync(join(WORK, "ready"), "");
}
const tailProc = Bun.spawn(["journalctl", `--directory=${JOURNAL}`, "--quiet", "--lines=0", "--show-cursor"], { stdout: "pipe" });
const tail = (await new Response(tailProc.stdout).text()).replace(/^-- cursor: /, "").trim();
await tailProc.exited;

const runs: { ms: number; hwm: number }[] = [];
for (let i = 0; i < 3; i++) {
  const cluster = await startMockCluster({ brokers: 3, topics: [{ name: "logs", partitions: 6 }] });
  try {
    const data = join(WORK, "kafka-data");
    rmSync(data, { recursive: true, force: true });
    const config = join(WORK, "kafka.yaml");
    const key = KEY === undefined ? "" : `, key: "${KEY}"`;
    writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\nsources:\n  journal: { type: journald, directory: ${JOURNAL}, start_at: head }\nsinks:\n  kafka: { type: kafka, inputs: [journal], brokers: [${cluster.brokers.map((b) => `"${b}"`).join(", ")}], topic: logs, acks: all${key} }\n`);
    const started = performance.now();
    const agent = Bun.spawn([join(ROOT, "dist", "nagare"), "run", "-c", config], { stdout: "ignore", stderr: "inherit" });
    const checkpoint = join(data, "checkpoints", "journal.json");
    let hwm = 0;
    for (;;) {
      hwm = memoryOf(agent.pid).hwm;
      if (existsSync(checkpoint) && JSON.parse(readFileSync(checkpoint, "utf8")).position.cursor === tail) break;
      if (performance.now() - started > 600_000) throw new Error("the agent did not finish within 10 minutes");
      await Bun.sleep(10);
    }
    runs.push({ ms: performance.now() - started, hwm });
    agent.kill("SIGTERM");
    await agent.exited;
  } finally {
    await cluster.stop();
  }
}
runs.sort((a, b) => a.ms - b.ms);
const best = runs[0]!;
console.log(`nagare journal -> kafka (mock cluster, acks=all${KEY ? `, key ${KEY}` : ", no key"}): ${ENTRIES} entries in ${best.ms.toFixed(0)} ms = ${Math.round(ENTRIES / (best.ms / 1000))} entries/s, process start included; runs ${runs.map((r) => r.ms.toFixed(0)).join(", ")} ms`);
console.log(`peak RSS (VmHWM): ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB (target: under 200 MB)`);
