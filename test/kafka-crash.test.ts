/**
 * journal → Kafka under the worst conditions: the agent killed with SIGKILL three times mid-stream, and the
 * leader broker down for 60 s while the journal keeps growing.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal, type ExportField } from "./support/journal.ts";
import { memoryOf, tempDir, waitFor } from "./support/util.ts";
import { RunningAgent } from "./support/agent.ts";
import { consumeAll, startConsumer, startMockCluster, type KafkaMessage } from "./support/kafka.ts";
import { writeKafkaConfig } from "./support/kafka-config.ts";
import { coverage } from "./support/config.ts";
import { recordMemory } from "../src/sources/journald/source.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const keyed = (seq: number): ExportField[] => [["K", `k${seq % 40}`]];
const seqOf = (m: KafkaMessage) => Number(JSON.parse(m.value ?? "{}").SEQ);

/** Every key's sequence numbers only ever go up, except where a restart replays (at most `restarts` times). */
function orderBreaksPerKey(messages: KafkaMessage[]): number {
  const last = new Map<string, number>();
  let breaks = 0;
  for (const m of messages) {
    const seq = seqOf(m);
    const prev = last.get(m.key!) ?? 0;
    if (seq <= prev) breaks++;
    last.set(m.key!, seq);
  }
  return breaks;
}

test("SIGKILL three times mid-stream: nothing lost, duplicates within one buffer per kill", async () => {
  const ENTRIES = 30_000;
  const KILLS = 3;
  const MAX_BYTES = 2 * 1024 * 1024;
  const cluster = await startMockCluster({ brokers: 3, topics: [{ name: "logs", partitions: 8 }] });
  const consumer = startConsumer(cluster.bootstrap, "logs");
  try {
    const dir = join(tmp.path, "kill");
    mkdirSync(dir);
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, ENTRIES, { extra: keyed }));
    const config = writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs", key: "{{field.K}}", maxBytes: String(MAX_BYTES) });
    for (let kill = 1; kill <= KILLS; kill++) {
      const agent = new RunningAgent(config);
      // At most ENTRIES: the count includes duplicates, and a target beyond what can arrive would never be met.
      const target = Math.min(ENTRIES, consumer.messages.length + 2000 + Math.floor(Math.random() * 4000));
      await consumer.waitFor((m) => m.length >= target, 60_000);
      agent.kill("SIGKILL");
      await agent.exited;
    }
    const agent = new RunningAgent(config);
    await consumer.waitFor((m) => coverage(m.map(seqOf), 1, ENTRIES).missing.length === 0, 120_000);
    expect(await agent.stop()).toBe(0);
    // Read back by the consumer that ran all along: the mock keeps only ~5 MB per partition.
    await consumer.stop();
    const messages = consumer.messages;
    const { missing, duplicates } = coverage(messages.map(seqOf), 1, ENTRIES);
    // Everything a kill can replay is what the buffer held; an entry of 735 bytes and 21 fields counts recordMemory(735, 21).
    const perBuffer = Math.ceil((MAX_BYTES + 512 * 1024) / recordMemory(735, 21));
    console.log(`kafka crash test: ${ENTRIES} entries, ${KILLS} kills, ${messages.length} messages, ${missing.length} missing, ${duplicates} duplicates (allowed ${KILLS} x ${perBuffer})`);
    expect(missing).toEqual([]);
    expect(duplicates).toBeLessThanOrEqual(KILLS * perBuffer);
    expect(orderBreaksPerKey(messages)).toBeLessThanOrEqual(KILLS * 40);
  } finally {
    await consumer.stop().catch(() => undefined);
    await cluster.stop();
  }
}, 240_000);

test("the leader down for 60 s while the journal grows: readers pause, memory stays bounded, nothing is lost", async () => {
  const MAX_BYTES = 64 * 1024 * 1024; // the default buffer
  const OUTAGE_MS = Number(process.env.NAGARE_OUTAGE_MS ?? 60_000);
  // 64 partitions and 256 keys: the mock keeps only ~5 MiB per partition, and this test writes ~50 MB.
  const cluster = await startMockCluster({ brokers: 1, topics: [{ name: "logs", partitions: 64 }] });
  const spread = (seq: number): ExportField[] => [["K", `k${seq % 256}`]];
  try {
    // Baseline: the same agent idle on an empty journal.
    const idleDir = join(tmp.path, "idle");
    mkdirSync(join(idleDir, "journal"), { recursive: true });
    const idle = new RunningAgent(writeKafkaConfig({ dir: idleDir, journal: join(idleDir, "journal"), bootstrap: cluster.bootstrap, topic: "idle", maxBytes: String(MAX_BYTES) }));
    await waitFor("the idle agent to read", () => idle.entries().some((e) => /reads the journal/.test(e.msg)), 20_000);
    const baseline = memoryOf(idle.pid).hwm;
    expect(await idle.stop()).toBe(0);

    const dir = join(tmp.path, "outage");
    mkdirSync(dir);
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 1000, { extra: spread }));
    const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs", key: "{{field.K}}", maxBytes: String(MAX_BYTES) }));
    await waitFor("1000 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 1000, 30_000);
    await cluster.command("down 1");
    const downAt = performance.now();
    let next = 1001;
    // The journal keeps growing at about 900 entries/s for the whole outage (pacing the writer, not waiting):
    // 54,000 entries of about 1.8 kB of buffer each, more than the buffer holds.
    while (performance.now() - downAt < OUTAGE_MS) {
      const started = performance.now();
      await writeJournal(journal, sequenceEntries(next, 900, { extra: spread }));
      next += 900;
      await Bun.sleep(Math.max(0, 1000 - (performance.now() - started)));
    }
    await waitFor("the readers to pause on a full buffer", () => agent.entries().some((e) => /buffer is full/.test(e.msg)), 30_000);
    const duringOutage = memoryOf(agent.pid).hwm;
    await cluster.command("up 1");
    const total = next - 1;
    await waitFor(`${total} messages`, async () => (await consumeAll(cluster.bootstrap, "logs")).length >= total, 120_000);
    const peak = memoryOf(agent.pid).hwm;
    expect(await agent.stop()).toBe(0);
    const MiB = (b: number) => (b / 1048576).toFixed(1);
    console.log(`kafka outage: ${total} entries, baseline VmHWM ${MiB(baseline)} MiB, during the outage ${MiB(duringOutage)} MiB, peak ${MiB(peak)} MiB, bound ${MiB(baseline + 2 * MAX_BYTES)} MiB`);
    const messages = await consumeAll(cluster.bootstrap, "logs");
    const result = coverage(messages.map(seqOf), 1, total);
    // Seen once in CI (2026-12-02): one entry missing with no duplicate, although the wait above had seen all
    // `total` messages. If it comes back, show what stood in its place (a message whose SEQ is not 1..total).
    if (result.missing.length > 0) {
      const odd = messages.filter((m) => !(seqOf(m) >= 1 && seqOf(m) <= total));
      console.log(`kafka outage: ${messages.length} messages read, missing ${JSON.stringify(result.missing.slice(0, 10))}; messages outside 1..${total}: ${JSON.stringify(odd.slice(0, 5).map((m) => ({ partition: m.partition, offset: m.offset, value: m.value?.slice(0, 300) })))}`);
    }
    expect(result).toEqual({ missing: [], duplicates: 0 });
    expect(duringOutage).toBeLessThan(baseline + 2 * MAX_BYTES);
    expect(peak).toBeLessThan(baseline + 2 * MAX_BYTES);
  } finally {
    await cluster.stop();
  }
}, 300_000);
