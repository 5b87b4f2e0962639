/**
 * journal → Kafka against a real Apache Kafka 4 cluster (three KRaft nodes, replication factor 3,
 * min.insync.replicas 2; test/support/kafka-cluster.ts): exactly once and in order while nothing fails
 * (idempotence), the agent SIGKILLed, a broker SIGKILLed, two brokers down, a topic that refuses big records,
 * TLS, SASL, every codec. Topics are read back with kcat over PLAINTEXT.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal, type ExportField } from "./support/journal.ts";
import { memoryOf, tempDir, waitFor } from "./support/util.ts";
import { ROOT, RunningAgent } from "./support/agent.ts";
import type { KafkaMessage } from "./support/kafka.ts";
import { kcat, sharedKafkaCluster, type KafkaCluster } from "./support/kafka-cluster.ts";
import { writeKafkaConfig } from "./support/kafka-config.ts";
import { caseDirs, coverage, range } from "./support/config.ts";
import { recordMemory } from "../src/sources/journald/source.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);
let cluster: KafkaCluster;
beforeAll(async () => {
  cluster = await sharedKafkaCluster();
}, 180_000);

const KEYS = 12;
const keyed = (seq: number): ExportField[] => [["K", `k${seq % KEYS}`]];
const seqOf = (m: KafkaMessage) => Number(JSON.parse(m.value ?? "{}").SEQ);
let topics = 0;

/** A fresh topic (3 partitions, rf 3 unless said otherwise) for one test. */
async function freshTopic(config?: Record<string, string>, partitions = 3): Promise<string> {
  const name = `logs-${++topics}-${process.pid}`;
  await cluster.createTopic(name, { partitions, config });
  return name;
}

/** How often a key's sequence goes backwards in the topic (0 when every key is in read order). */
function orderBreaksPerKey(messages: KafkaMessage[]): number {
  const last = new Map<string, number>();
  let breaks = 0;
  for (const m of messages) {
    const seq = seqOf(m);
    if (seq <= (last.get(m.key!) ?? 0)) breaks++;
    last.set(m.key!, seq);
  }
  return breaks;
}

async function consumedAtLeast(topic: string, n: number, timeoutMs = 60_000): Promise<KafkaMessage[]> {
  let messages: KafkaMessage[] = [];
  await waitFor(`${n} messages in ${topic}`, async () => (messages = await cluster.consumeAll(topic)).length >= n, timeoutMs);
  return messages;
}

function deadLetters(dir: string): { id: string; reason: string; record: Record<string, unknown> }[] {
  const path = join(dir, "data", "dead-letter", "kafka.jsonl");
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
}

describe("journal to a real Kafka cluster", () => {
  test("every entry exactly once, in order per key, each key in one partition; the id header", async () => {
    const topic = await freshTopic();
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 20_000, { extra: keyed }));
    const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic, key: "{{field.K}}", maxBytes: "16MiB" }));
    await consumedAtLeast(topic, 20_000);
    expect(await agent.stop()).toBe(0);
    const messages = await cluster.consumeAll(topic);
    expect(coverage(messages.map(seqOf), 1, 20_000)).toEqual({ missing: [], duplicates: 0 });
    expect(orderBreaksPerKey(messages)).toBe(0);
    const partitionsOfKey = new Map<string, Set<number>>();
    for (const m of messages) partitionsOfKey.set(m.key!, (partitionsOfKey.get(m.key!) ?? new Set()).add(m.partition));
    expect([...partitionsOfKey.values()].every((p) => p.size === 1)).toBe(true);
    expect(new Set(messages.map((m) => m.partition)).size).toBe(3);
    expect(messages.every((m) => /^[0-9a-f]{32}$/.test(m.headers["nagare-id"] ?? ""))).toBe(true);
    expect(agent.entries().filter((e) => e.level === "warn" || e.level === "error").map((e) => e.msg)).toEqual([]);
  }, 120_000);

  test("the agent SIGKILLed three times mid-stream: nothing lost, duplicates within the in-flight window", async () => {
    const ENTRIES = 40_000;
    const MAX_BYTES = 4 * 1024 * 1024;
    const topic = await freshTopic();
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, ENTRIES, { extra: keyed }));
    const config = writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic, key: "{{field.K}}", maxBytes: String(MAX_BYTES) });
    let seen = 0;
    for (let kill = 1; kill <= 3; kill++) {
      const agent = new RunningAgent(config);
      // At most ENTRIES: messages counted so far include duplicates, so a target beyond the journal's size plus
      // the duplicates so far might never be reached.
      seen = (await consumedAtLeast(topic, Math.min(ENTRIES, seen + 3000 + Math.floor(Math.random() * 5000)))).length;
      agent.kill("SIGKILL");
      await agent.exited;
    }
    const agent = new RunningAgent(config);
    await waitFor("every entry", async () => coverage((await cluster.consumeAll(topic)).map(seqOf), 1, ENTRIES).missing.length === 0, 120_000);
    expect(await agent.stop()).toBe(0);
    const messages = await cluster.consumeAll(topic);
    const { missing, duplicates } = coverage(messages.map(seqOf), 1, ENTRIES);
    // Everything a kill can replay is what the buffer held; an entry of 735 bytes and 21 fields counts recordMemory(735, 21).
    const window = Math.ceil(MAX_BYTES / recordMemory(735, 21));
    console.log(`kafka cluster kill test: ${ENTRIES} entries, 3 agent kills, ${messages.length} messages, ${missing.length} missing, ${duplicates} duplicates (allowed 3 x ${window})`);
    expect(missing).toEqual([]);
    expect(duplicates).toBeLessThanOrEqual(3 * window);
  }, 300_000);

  test("a broker SIGKILLed mid-stream and restarted: nothing lost", async () => {
    const ENTRIES = 30_000;
    const topic = await freshTopic();
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 10_000, { extra: keyed }));
    const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic, key: "{{field.K}}", maxBytes: "8MiB" }));
    try {
      await consumedAtLeast(topic, 5000);
      await cluster.killBroker(2);
      await writeJournal(journal, sequenceEntries(10_001, ENTRIES - 10_000, { extra: keyed }));
      await consumedAtLeast(topic, 15_000, 90_000);
      await cluster.startBroker(2);
      await waitFor("every entry", async () => coverage((await cluster.consumeAll(topic)).map(seqOf), 1, ENTRIES).missing.length === 0, 120_000);
    } finally {
      if (cluster.brokerPid(2) === undefined) await cluster.startBroker(2);
    }
    expect(await agent.stop()).toBe(0);
    const messages = await cluster.consumeAll(topic);
    const { missing, duplicates } = coverage(messages.map(seqOf), 1, ENTRIES);
    console.log(`kafka cluster broker kill: ${ENTRIES} entries, ${messages.length} messages, ${missing.length} missing, ${duplicates} duplicates, ${orderBreaksPerKey(messages)} order breaks`);
    expect(missing).toEqual([]);
    expect(agent.entries().some((e) => /delivers again after \d+ failed attempts/.test(e.msg))).toBe(true);
  }, 300_000);

  test("two of three brokers down: readers pause, memory stays bounded, delivery resumes when they return", async () => {
    const MAX_BYTES = 8 * 1024 * 1024;
    const topic = await freshTopic();
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 1000, { extra: keyed }));
    const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic, key: "{{field.K}}", maxBytes: String(MAX_BYTES) }));
    let total = 1000;
    try {
      await consumedAtLeast(topic, 1000);
      const before = memoryOf(agent.pid).hwm;
      await cluster.stopBroker(3);
      await cluster.stopBroker(2);
      // More than the buffer holds (a record counts about 2.7 kB): the readers must pause.
      await writeJournal(journal, sequenceEntries(1001, 9000, { extra: keyed }));
      total = 10_000;
      await waitFor("the readers to pause on a full buffer", () => agent.entries().some((e) => /buffer is full/.test(e.msg)), 60_000);
      // Reading fills the buffer in a fraction of a second; the first failed send may be answered later than that.
      await waitFor("an ERROR for the failed sends", () => agent.entries().some((e) => e.level === "error" && /could not deliver.*(NOT_ENOUGH_REPLICAS|REQUEST_TIMED_OUT|CONNECTION_REFUSED|NETWORK_EXCEPTION)/.test(e.msg)), 30_000);
      const during = memoryOf(agent.pid).hwm;
      console.log(`kafka cluster two brokers down: VmHWM ${(before / 1048576).toFixed(1)} MiB before, ${(during / 1048576).toFixed(1)} MiB while paused (buffer ${MAX_BYTES / 1048576} MiB)`);
      expect(during).toBeLessThan(before + 3 * MAX_BYTES);
    } finally {
      for (const id of [2, 3] as const) if (cluster.brokerPid(id) === undefined) await cluster.startBroker(id);
    }
    await waitFor("every entry", async () => coverage((await cluster.consumeAll(topic)).map(seqOf), 1, total).missing.length === 0, 180_000);
    expect(await agent.stop()).toBe(0);
    expect(coverage((await cluster.consumeAll(topic)).map(seqOf), 1, total).missing).toEqual([]);
  }, 360_000);

  test("a topic with a small max.message.bytes: only the records too big for it are dead-lettered", async () => {
    const topic = await freshTopic({ "max.message.bytes": "4096" }, 1);
    const dir = caseDir();
    const journal = join(dir, "journal");
    const big = new Set([7, 150, 151, 299]);
    await writeJournal(journal, sequenceEntries(1, 300, { extra: (seq) => (big.has(seq) ? [["PAD", "p".repeat(6000)]] : []) }));
    const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic }));
    await consumedAtLeast(topic, 296);
    await waitFor("4 dead letters", () => deadLetters(dir).length >= 4, 30_000);
    expect(await agent.stop()).toBe(0);
    expect(deadLetters(dir).map((d) => [Number(d.record.SEQ), d.reason])).toEqual([...big].map((s) => [s, "Kafka refused it: MESSAGE_TOO_LARGE"]));
    expect((await cluster.consumeAll(topic)).map(seqOf)).toEqual(range(1, 300).filter((s) => !big.has(s)));
  }, 120_000);

  test("topics the brokers cannot take are dead-lettered; the other records of the batch are delivered", async () => {
    // A consumer group makes the internal __consumer_offsets exist; producing to it is INVALID_TOPIC_EXCEPTION.
    await kcat([...cluster.kcatArgs("plaintext"), "-G", `group-${process.pid}`, "-e", "-q", "-X", "session.timeout.ms=6000", "no-such-topic"], { timeoutMs: 30_000 });
    await waitFor("__consumer_offsets", async () => (await cluster.metadata({ topic: "__consumer_offsets" })).topics.some((t) => t.partitions.length > 0), 30_000);
    const topic = await freshTopic();
    const dir = caseDir();
    const journal = join(dir, "journal");
    const target = (seq: number) => (seq % 10 === 3 ? "bad topic!" : seq % 10 === 7 ? "__consumer_offsets" : topic);
    await writeJournal(journal, sequenceEntries(1, 100, { extra: (seq) => [["T", target(seq)]] }));
    const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "{{field.T}}" }));
    await consumedAtLeast(topic, 80);
    await waitFor("20 dead letters", () => deadLetters(dir).length >= 20, 30_000);
    expect(await agent.stop()).toBe(0);
    expect((await cluster.consumeAll(topic)).map(seqOf).sort((a, b) => a - b)).toEqual(range(1, 100).filter((s) => s % 10 !== 3 && s % 10 !== 7));
    const reasons = new Map(deadLetters(dir).map((d) => [Number(d.record.SEQ), d.reason]));
    expect(reasons.get(3)).toMatch(/"bad topic!" is not a legal Kafka topic name/);
    expect(reasons.get(7)).toBe("Kafka refused the topic __consumer_offsets: INVALID_TOPIC_EXCEPTION");
  }, 120_000);
});

describe("TLS, SASL and codecs against the real cluster", () => {
  async function ship(extra: Record<string, unknown>, listener: keyof KafkaCluster["listeners"], n = 500): Promise<{ topic: string; agent: RunningAgent; dir: string }> {
    const topic = await freshTopic();
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, n, { extra: keyed }));
    const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.listeners[listener].join(","), topic, key: "{{field.K}}", extra }));
    return { topic, agent, dir };
  }

  test("TLS with the CA that signed the brokers' certificates", async () => {
    const { topic, agent } = await ship({ tls: { ca: cluster.tls.caPath } }, "ssl");
    await consumedAtLeast(topic, 500);
    expect(await agent.stop()).toBe(0);
    expect(coverage((await cluster.consumeAll(topic)).map(seqOf), 1, 500)).toEqual({ missing: [], duplicates: 0 });
  }, 60_000);

  test("TLS with a wrong CA: refused, an ERROR naming the fix, nothing delivered and nothing acknowledged", async () => {
    const { topic, agent, dir } = await ship({ tls: { ca: cluster.tls.wrongCaPath } }, "ssl");
    await waitFor("the ERROR naming the fix", () => agent.entries().some((e) => e.level === "error" && /TLS_FAILED.*to fix: check tls\.ca/.test(e.msg)), 30_000);
    expect(await agent.stop()).toBe(0);
    expect(await cluster.consumeAll(topic)).toEqual([]);
    expect(existsSync(join(dir, "data", "checkpoints", "journal.json"))).toBe(false);
  }, 60_000);

  test.each([
    ["SCRAM-SHA-256", "scram-sha-256", "scram256", "saslPlaintext"],
    ["SCRAM-SHA-512", "scram-sha-512", "scram512", "saslSsl"],
    ["PLAIN", "plain", "plain", "saslSsl"],
  ] as const)("SASL %s", async (_name, mechanism, user, listener) => {
    const tls = listener === "saslSsl" ? { tls: { ca: cluster.tls.caPath } } : {};
    const { topic, agent } = await ship({ ...tls, sasl: { mechanism, ...cluster.users[user] } }, listener);
    await consumedAtLeast(topic, 500);
    expect(await agent.stop()).toBe(0);
    expect(coverage((await cluster.consumeAll(topic)).map(seqOf), 1, 500)).toEqual({ missing: [], duplicates: 0 });
  }, 60_000);

  test("SASL with a wrong password: an ERROR naming the fix, nothing lost; the right one delivers everything", async () => {
    const topic = await freshTopic();
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 300, { extra: keyed }));
    const config = (password: string) =>
      writeKafkaConfig({ dir, journal, bootstrap: cluster.listeners.saslPlaintext.join(","), topic, extra: { sasl: { mechanism: "scram-sha-512", username: cluster.users.scram512.username, password } } });
    const wrong = new RunningAgent(config("not-the-password"));
    await waitFor("the ERROR naming the fix", () => wrong.entries().some((e) => e.level === "error" && /SASL_AUTHENTICATION_FAILED.*to fix: check sasl\.username, sasl\.password/.test(e.msg)), 30_000);
    expect(await wrong.stop()).toBe(0);
    expect(wrong.log.join("\n")).not.toContain("not-the-password");
    const right = new RunningAgent(config(cluster.users.scram512.password));
    await consumedAtLeast(topic, 300);
    expect(await right.stop()).toBe(0);
    expect(coverage((await cluster.consumeAll(topic)).map(seqOf), 1, 300)).toEqual({ missing: [], duplicates: 0 });
  }, 90_000);

  test("the single binary (WebAssembly codecs inside it) ships lz4 and snappy with nothing but journalctl on PATH", async () => {
    const build = Bun.spawn(["bash", join(ROOT, "scripts", "build.sh"), join(tmp.path, "dist")], { stdout: "ignore", stderr: "pipe" });
    expect(await build.exited).toBe(0);
    const bin = join(tmp.path, "bin");
    mkdirSync(bin, { recursive: true });
    for (const tool of ["journalctl", "stdbuf"]) copyFileSync(Bun.which(tool)!, join(bin, tool));
    for (const codec of ["lz4", "snappy"]) {
      const topic = await freshTopic();
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 1000, { extra: keyed }));
      const agent = new RunningAgent(writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic, key: "{{field.K}}", extra: { compression: codec } }), { command: ["env", "-i", `PATH=${bin}`, join(tmp.path, "dist", "nagare")] });
      await consumedAtLeast(topic, 1000);
      expect(await agent.stop()).toBe(0);
      expect(coverage((await cluster.consumeAll(topic)).map(seqOf), 1, 1000)).toEqual({ missing: [], duplicates: 0 });
    }
  }, 120_000);

  test.each(["gzip", "snappy", "lz4", "zstd"])("%s compression, read back", async (codec) => {
    const { topic, agent } = await ship({ compression: codec }, "plaintext", 3000);
    await consumedAtLeast(topic, 3000);
    expect(await agent.stop()).toBe(0);
    const messages = await cluster.consumeAll(topic);
    expect(coverage(messages.map(seqOf), 1, 3000)).toEqual({ missing: [], duplicates: 0 });
    expect(orderBreaksPerKey(messages)).toBe(0);
    expect(JSON.parse(messages[0]!.value!).MESSAGE).toMatch(/^seq=\d+ /);
  }, 60_000);
});
