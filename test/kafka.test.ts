/**
 * journal → Kafka end to end: real journal files, the agent process, librdkafka's mock cluster over TCP,
 * topics read back with kcat. Faults are injected through the mock: brokers down, produce errors.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { decode } from "@msgpack/msgpack";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { journalctlExport, parseExport, sequenceEntries, writeJournal, type ExportField } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { RunningAgent } from "./support/agent.ts";
import { consumeAll, startMockCluster, type KafkaMessage, type MockCluster } from "./support/kafka.ts";
import { writeKafkaConfig } from "./support/kafka-config.ts";
import { caseDirs, coverage, range } from "./support/config.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

const keyed = (seq: number): ExportField[] => [["K", `k${seq % 10}`]];
const seqOf = (m: KafkaMessage) => Number(JSON.parse(m.value ?? "{}").SEQ);

async function withCluster<T>(topics: { name: string; partitions: number }[], fn: (cluster: MockCluster) => Promise<T>): Promise<T> {
  const cluster = await startMockCluster({ brokers: 3, topics });
  try {
    return await fn(cluster);
  } finally {
    await cluster.stop();
  }
}

function readDeadLetters(dir: string): { id: string; reason: string; record: Record<string, unknown> }[] {
  const path = join(dir, "data", "dead-letter", "kafka.jsonl");
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

describe("journal to Kafka", () => {
  test("every entry arrives, in order per key, with the id header, the id field and the entry's time", async () => {
    await withCluster([{ name: "logs", partitions: 3 }], async (cluster) => {
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 5000, { extra: keyed }));
      const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs", key: "{{field.K}}", extra: { id_field: true } }));
      await waitFor("5000 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 5000, 30_000);
      expect(await agent.stop()).toBe(0);
      const messages = await consumeAll(cluster.bootstrap, "logs");
      expect(coverage(messages.map(seqOf), 1, 5000)).toEqual({ missing: [], duplicates: 0 });
      const byKey = new Map<string, number[]>();
      for (const m of messages) byKey.set(m.key!, [...(byKey.get(m.key!) ?? []), seqOf(m)]);
      expect(byKey.size).toBe(10);
      for (const seqs of byKey.values()) expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      for (const m of messages) expect(new Set(messages.filter((x) => x.key === m.key).map((x) => x.partition)).size).toBe(1);
      const oracle = parseExport(await journalctlExport(journal));
      const first = messages.find((m) => seqOf(m) === 1)!;
      const value = JSON.parse(first.value!);
      expect(first.headers["nagare-id"]).toBe(new Bun.CryptoHasher("md5").update(oracle[0]!.find(([k]) => k === "__CURSOR")![1] as string).digest("hex"));
      expect(value._nagare_id).toBe(first.headers["nagare-id"]);
      expect(first.timestamp).toBe(Math.floor(Number(value.__REALTIME_TIMESTAMP) / 1000));
    });
  }, 60_000);

  test("a broker down for 10 s mid-stream loses nothing; delivery resumes without a restart", async () => {
    await withCluster([{ name: "logs", partitions: 1 }], async (cluster) => {
      await cluster.command("leader logs 0 1");
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 1000));
      const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs" }));
      await waitFor("1000 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 1000, 30_000);
      await cluster.command("down 1");
      const downAt = performance.now();
      await writeJournal(journal, sequenceEntries(1001, 1000));
      await waitFor("failed sends while the leader is down, for 10 s", () => agent.entries().some((e) => e.level === "error" && /could not deliver/.test(e.msg)) && performance.now() - downAt >= 10_000, 20_000);
      await cluster.command("up 1");
      await waitFor("2000 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 2000, 30_000);
      expect(await agent.stop()).toBe(0);
      const seqs = (await consumeAll(cluster.bootstrap, "logs")).map(seqOf);
      expect(coverage(seqs, 1, 2000).missing).toEqual([]);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(agent.entries().some((e) => /delivers again after \d+ failed attempts/.test(e.msg))).toBe(true);
    });
  }, 60_000);

  test("retryable produce errors are retried and delivered; MESSAGE_TOO_LARGE goes to the dead-letter file", async () => {
    await withCluster([{ name: "logs", partitions: 1 }], async (cluster) => {
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 50));
      await cluster.command("errors Produce 3 REQUEST_TIMED_OUT NOT_ENOUGH_REPLICAS LEADER_NOT_AVAILABLE");
      // The counts of failed attempts below hold for one batch holding every new entry: seal batches by count, not
      // by a timeout that a slow journalctl could hit halfway through its output.
      const inOneBatch = (records: number) => ({ buffer: { max_bytes: "8MiB", batch_max_records: records, batch_timeout: "10m" } });
      const config = writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs", top: inOneBatch(50) });
      let agent = new RunningAgent(config);
      await waitFor("50 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 50, 30_000);
      expect(await agent.stop()).toBe(0);
      // The first failure is logged (later ones are rate-limited), and recovery reports all three attempts.
      expect(agent.entries().some((e) => e.level === "error" && e.msg.includes("(REQUEST_TIMED_OUT)"))).toBe(true);
      expect(agent.entries().some((e) => /delivers again after 3 failed attempts/.test(e.msg))).toBe(true);
      expect(coverage((await consumeAll(cluster.bootstrap, "logs")).map(seqOf), 1, 50)).toEqual({ missing: [], duplicates: 0 });
      expect(readDeadLetters(dir)).toEqual([]);

      // Six refusals: the batch of 20, then the first half of each refused piece (10, 5, 3, 2), then 51 alone.
      await cluster.command("errors Produce 6 MESSAGE_TOO_LARGE");
      await writeJournal(journal, sequenceEntries(51, 20));
      agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs", top: inOneBatch(20) }));
      await waitFor("the rest of the batch", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 69, 30_000);
      expect(await agent.stop()).toBe(0);
      const letters = readDeadLetters(dir);
      expect(letters.map((l) => Number(l.record.SEQ))).toEqual([51]);
      expect(letters[0]!.reason).toBe("Kafka refused it: MESSAGE_TOO_LARGE");
      expect((await consumeAll(cluster.bootstrap, "logs")).map(seqOf)).toEqual([...range(1, 50), ...range(52, 19)]);
    });
  }, 60_000);

  test("a message over max_message_bytes is dead-lettered without being sent; its neighbours are delivered", async () => {
    await withCluster([{ name: "logs", partitions: 1 }], async (cluster) => {
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 10, { extra: (seq) => (seq === 5 ? [["BIG", "x".repeat(1_500_000)]] : []) }));
      const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs" }));
      await waitFor("9 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 9, 30_000);
      await waitFor("the dead letter", () => readDeadLetters(dir).length === 1, 10_000);
      expect(await agent.stop()).toBe(0);
      expect((await consumeAll(cluster.bootstrap, "logs")).map(seqOf)).toEqual([1, 2, 3, 4, 6, 7, 8, 9, 10]);
      expect(readDeadLetters(dir)[0]!.reason).toMatch(/over max_message_bytes \(1000000\)/);
      expect(agent.entries().some((e) => e.level === "warn" && /refused 1 records permanently/.test(e.msg))).toBe(true);
    });
  }, 60_000);

  test("an unknown topic is retried with an ERROR naming the fix, and delivered once the topic exists", async () => {
    await withCluster([{ name: "logs", partitions: 2 }], async (cluster) => {
      await cluster.command("topic-error logs UNKNOWN_TOPIC_OR_PARTITION");
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 100));
      const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs" }));
      await waitFor("the ERROR naming the fix", () => agent.entries().some((e) => e.level === "error" && /UNKNOWN_TOPIC_OR_PARTITION.*create the topic/.test(e.msg)), 20_000);
      await cluster.command("topic-error logs NO_ERROR");
      await waitFor("100 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 100, 60_000);
      expect(await agent.stop()).toBe(0);
      expect(coverage((await consumeAll(cluster.bootstrap, "logs")).map(seqOf), 1, 100)).toEqual({ missing: [], duplicates: 0 });
    });
  }, 90_000);

  test("msgpack values with gzip compression: binary fields arrive as bytes", async () => {
    await withCluster([{ name: "packed", partitions: 1 }], async (cluster) => {
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 200, { extra: (seq) => [["BLOB", new Uint8Array([0xff, 0x00, seq & 0xff])]] }));
      const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "packed", extra: { encoding: "msgpack", compression: "gzip", id_field: true } }));
      await waitFor("200 messages", async () => (await consumeAll(cluster.bootstrap, "packed")).length >= 200, 30_000);
      expect(await agent.stop()).toBe(0);
      const values = (await consumeAll(cluster.bootstrap, "packed")).map((m) => ({ value: decode(m.valueBytes!) as Record<string, unknown>, id: m.headers["nagare-id"] }));
      expect(values.map((v) => Number(v.value.SEQ))).toEqual(range(1, 200));
      expect(values[6]!.value.BLOB).toEqual(new Uint8Array([0xff, 0x00, 7]));
      expect(values[6]!.value._nagare_id).toBe(values[6]!.id);
    });
  }, 60_000);
});
