/**
 * Self-test of the real Kafka cluster harness (test/support/kafka-cluster.ts): three KRaft nodes of Apache Kafka
 * 4.4, checked with kcat (librdkafka 2.0.2) and with Kafka's own Java console clients. It also pins down what a
 * producer sees when brokers die, which the Kafka sink's tests build on.
 *
 * kcat cannot authenticate with SCRAM to Kafka 4: librdkafka before 2.6.1 appends the client nonce twice in the
 * SCRAM client-final-message, and Kafka 4 compares the nonce strictly (librdkafka PR 4895). SCRAM is therefore
 * checked with the Java clients, and kcat's failure is pinned for the librdkafka Debian 12 ships.
 */
import { beforeAll, beforeEach, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { BROKER_IDS, kcat, runKafkaTool, sharedKafkaCluster, type BrokerId, type ClientListener, type KafkaCluster, type SaslMechanism } from "./support/kafka-cluster.ts";
import { parseKcatJsonLine, type KafkaMessage } from "./support/kafka.ts";
import { waitFor } from "./support/util.ts";

let cluster: KafkaCluster;

beforeAll(async () => {
  cluster = await sharedKafkaCluster();
}, 150_000);

// A test that failed half-way may have left brokers down: sharedKafkaCluster() starts them again, so the next
// test does not fail for that reason too.
beforeEach(async () => {
  if (cluster.runningBrokers().length > 0) cluster = await sharedKafkaCluster();
}, 150_000);

/**
 * kcat -P of one message per line (acks=all); resolves with kcat's exit code (0 only if every message was
 * acknowledged) and its log. A broker that is down shows in the log ("Connection refused") even when all went well.
 */
async function produce(args: string[], topic: string, lines: string[], extra: string[] = []): Promise<{ code: number | null; errors: string }> {
  const r = await kcat(["-P", ...args, "-t", topic, "-X", "acks=all", "-X", "message.timeout.ms=20000", ...extra], { input: lines.map((l) => `${l}\n`).join(""), timeoutMs: 40_000 });
  return { code: r.code, errors: r.stderr.trim() };
}

/** Asserts that every message was acknowledged. */
async function produced(args: string[], topic: string, lines: string[], extra: string[] = []): Promise<void> {
  const r = await produce(args, topic, lines, extra);
  if (r.code !== 0) throw new Error(`kcat -P ${topic} exited ${r.code}: ${r.errors}`);
}

/** Every message of the topic, read with kcat through the given connection arguments. */
async function readBack(args: string[], topic: string): Promise<KafkaMessage[]> {
  const r = await kcat(["-C", ...args, "-t", topic, "-o", "beginning", "-e", "-J", "-q"], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`kcat -C ${topic} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => parseKcatJsonLine(new TextEncoder().encode(l)));
}

const values = (messages: KafkaMessage[]): (string | null)[] => messages.map((m) => m.value);
const sorted = (ids: number[]): number[] => [...ids].sort((a, b) => a - b);

/** Metadata of one topic as broker `id` sees it, or undefined while that broker cannot answer. */
async function topicAt(id: BrokerId | undefined, topic: string) {
  try {
    const md = await cluster.metadata({ broker: id, topic, timeoutMs: 5000 });
    return { brokers: md.brokers.map((b) => b.id), partitions: md.topics[0]?.partitions ?? [] };
  } catch {
    return undefined;
  }
}

/** Waits until the controller fenced broker `id`: it is gone from the metadata and from every ISR of `topic`. */
async function waitFenced(id: BrokerId, topic: string): Promise<void> {
  await waitFor(
    `broker ${id} fenced out of the ISRs of ${topic}`,
    async () => {
      const t = await topicAt(undefined, topic);
      return t !== undefined && !t.brokers.includes(id) && t.partitions.every((p) => !p.isr.includes(id) && p.leader !== id && p.leader > 0);
    },
    60_000,
    200,
  );
}

test("metadata lists the three brokers at their PLAINTEXT addresses", async () => {
  const md = await cluster.metadata();
  expect(md.brokers.map((b) => `${b.host}:${b.port}`)).toEqual(cluster.listeners.plaintext);
  expect(md.brokers.map((b) => b.id)).toEqual([1, 2, 3]);
  expect(cluster.bootstrap).toBe(cluster.listeners.plaintext.join(","));
  for (const l of ["plaintext", "ssl", "saslPlaintext", "saslSsl"] as const) expect(cluster.listeners[l]).toHaveLength(3);
  expect(new Set(Object.values(cluster.listeners).flat()).size).toBe(12);
});

test("a topic is created with replication factor 3 (every replica in the ISR on every broker) and its configs apply", async () => {
  await cluster.createTopic("harness-rf3", { partitions: 3, config: { "max.message.bytes": "2048" } });
  for (const id of BROKER_IDS) {
    const t = await topicAt(id, "harness-rf3");
    expect(t?.partitions).toHaveLength(3);
    for (const p of t?.partitions ?? []) {
      expect(sorted(p.replicas)).toEqual([1, 2, 3]);
      expect(sorted(p.isr)).toEqual([1, 2, 3]);
    }
  }
  await produced(cluster.kcatArgs("plaintext"), "harness-rf3", ["x".repeat(1000)]);
  const big = await produce(cluster.kcatArgs("plaintext"), "harness-rf3", ["x".repeat(3000)]);
  expect(big.code).not.toBe(0);
  expect(big.errors).toContain("Message size too large");
});

test("topics are not auto-created", async () => {
  const first = await cluster.metadata({ topic: "harness-nosuch" });
  expect(first.topics[0]?.error).toContain("Unknown topic");
  expect((await cluster.metadata()).topics.map((t) => t.topic)).not.toContain("harness-nosuch");
});

test("PLAINTEXT: kcat produces with acks=all and consumeAll reads it back", async () => {
  await cluster.createTopic("harness-plain", { partitions: 2 });
  await produced(cluster.kcatArgs("plaintext"), "harness-plain", ["a", "b", "c"], ["-p", "1"]);
  const messages = await cluster.consumeAll("harness-plain");
  expect(messages.map((m) => [m.partition, m.offset, m.value])).toEqual([
    [1, 0, "a"],
    [1, 1, "b"],
    [1, 2, "c"],
  ]);
});

test("SSL: kcat trusting an unrelated CA is refused; trusting the cluster CA it produces and reads back", async () => {
  await cluster.createTopic("harness-ssl");
  // kcat -P gives up once every broker failed ("All broker connections are down"): no metadata timeout to wait.
  const wrong = await produce(cluster.kcatArgs("ssl", { caPath: cluster.tls.wrongCaPath }), "harness-ssl", ["refused"]);
  expect(wrong.code).not.toBe(0);
  expect(wrong.errors).toContain("certificate verify failed");
  const ssl = cluster.kcatArgs("ssl");
  await produced(ssl, "harness-ssl", ["over tls"]);
  expect(values(await readBack(ssl, "harness-ssl"))).toEqual(["over tls"]);
});

test("SASL PLAIN on SASL_PLAINTEXT and SASL_SSL: kcat produces and reads back; a wrong password is refused", async () => {
  await cluster.createTopic("harness-sasl-plain");
  for (const listener of ["saslPlaintext", "saslSsl"] as const) {
    const args = cluster.kcatArgs(listener, { mechanism: "PLAIN" });
    await produced(args, "harness-sasl-plain", [listener]);
    const wrong = await produce(cluster.kcatArgs(listener, { mechanism: "PLAIN", user: { username: cluster.users.plain.username, password: "wrong" } }), "harness-sasl-plain", ["refused"]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.errors).toContain("Invalid username or password");
  }
  expect(values(await readBack(cluster.kcatArgs("saslSsl", { mechanism: "PLAIN" }), "harness-sasl-plain"))).toEqual(["saslPlaintext", "saslSsl"]);
});

test("SCRAM-SHA-256 and SCRAM-SHA-512 on SASL_PLAINTEXT and SASL_SSL: Kafka's Java clients produce and read back; a wrong password is refused", async () => {
  const combos: [ClientListener, SaslMechanism][] = [
    ["saslPlaintext", "SCRAM-SHA-256"],
    ["saslPlaintext", "SCRAM-SHA-512"],
    ["saslSsl", "SCRAM-SHA-256"],
    ["saslSsl", "SCRAM-SHA-512"],
  ];
  // One topic per combination, so each read-back shows exactly what that client wrote.
  const topic = (l: ClientListener, m: SaslMechanism) => `harness-${l}-${m}`.toLowerCase();
  await Promise.all(combos.map(([l, m]) => cluster.createTopic(topic(l, m))));
  const results = await Promise.all(
    combos.map(async ([listener, mechanism]) => {
      const bootstrap = cluster.listeners[listener].join(",");
      const config = cluster.javaClientConfig(listener, { mechanism });
      const t = topic(listener, mechanism);
      const sent = await runKafkaTool("org.apache.kafka.tools.ConsoleProducer", ["--bootstrap-server", bootstrap, "--topic", t, "--command-config", config, "--command-property", "acks=all", "--sync"], { input: `${mechanism} over ${listener}\n` });
      const read = await runKafkaTool("org.apache.kafka.tools.consumer.ConsoleConsumer", ["--bootstrap-server", bootstrap, "--topic", t, "--partition", "0", "--offset", "earliest", "--max-messages", "1", "--timeout-ms", "30000", "--command-config", config]);
      const user = mechanism === "SCRAM-SHA-256" ? cluster.users.scram256 : cluster.users.scram512;
      const badConfig = cluster.javaClientConfig(listener, { mechanism, user: { username: user.username, password: "wrong" } });
      const bad = await runKafkaTool("org.apache.kafka.tools.ConsoleProducer", ["--bootstrap-server", bootstrap, "--topic", t, "--command-config", badConfig, "--sync", "--max-block-ms", "20000"], { input: "never\n" });
      return {
        combo: `${listener} ${mechanism}`,
        sent: sent.code === 0 ? "ok" : sent.stderr,
        read: read.code === 0 ? read.stdout : read.stderr,
        bad: bad.code !== 0 && bad.stderr.includes(`SaslAuthenticationException: Authentication failed during authentication due to invalid credentials with SASL mechanism ${mechanism}`),
      };
    }),
  );
  expect(results).toEqual(combos.map(([l, m]) => ({ combo: `${l} ${m}`, sent: "ok", read: `${m} over ${l}\n`, bad: true })));
  for (const [l, m] of combos) expect(values(await cluster.consumeAll(topic(l, m)))).toEqual([`${m} over ${l}`]);
}, 120_000);

test("kcat's SCRAM works against Kafka 4 only from librdkafka 2.6.1 on", async () => {
  const version = /librdkafka (\d+)\.(\d+)\.(\d+)/.exec((await kcat(["-V"])).stdout);
  expect(version).not.toBeNull();
  const [major, minor, patch] = version!.slice(1).map(Number) as [number, number, number];
  const fixed = major > 2 || (major === 2 && (minor > 6 || (minor === 6 && patch >= 1)));
  await cluster.createTopic("harness-kcat-scram");
  const r = await produce(cluster.kcatArgs("saslPlaintext", { mechanism: "SCRAM-SHA-256" }), "harness-kcat-scram", ["scram"]);
  if (fixed) {
    expect(r.code).toBe(0);
  } else {
    expect(r.code).not.toBe(0);
    expect(r.errors).toContain("invalid credentials with SASL mechanism SCRAM-SHA-256");
  }
});

test("a SIGKILLed broker is fenced out of the ISRs; restarted, it is back in every broker's metadata with every ISR full", async () => {
  const topic = "harness-restart";
  await cluster.createTopic(topic, { partitions: 3 });
  const pid = cluster.brokerPid(2);
  expect(pid).toBeNumber();
  await cluster.killBroker(2);
  expect(cluster.brokerPid(2)).toBeUndefined();
  expect(existsSync(`/proc/${pid}`)).toBe(false);
  await waitFenced(2, topic);
  // min.insync.replicas=2: acks=all still succeeds with two of three.
  await produced(cluster.kcatArgs("plaintext"), topic, ["while 2 was down"]);

  await cluster.startBroker(2);
  expect(cluster.brokerPid(2)).not.toBe(pid);
  for (const id of BROKER_IDS) {
    const t = await topicAt(id, topic);
    expect(t?.brokers).toEqual([1, 2, 3]);
    for (const p of t?.partitions ?? []) expect(sorted(p.isr)).toEqual([1, 2, 3]);
  }
  expect(values(await cluster.consumeAll(topic))).toEqual(["while 2 was down"]);
}, 120_000);

test("two of three down: acks=all times out while no quorum can shrink the ISR (yet the leader kept the record), fails at once with NOT_ENOUGH_REPLICAS after a controlled shutdown; both come back", async () => {
  const topic = "harness-two-down";
  await cluster.createTopic(topic, { partitions: 3 });
  await cluster.killBroker(3);
  await waitFenced(3, topic);
  // The survivor is the leader of partition 0, the other live broker goes down with 3.
  const survivor = (await topicAt(undefined, topic))?.partitions[0]?.leader as BrokerId;
  expect([1, 2]).toContain(survivor);
  const other: BrokerId = survivor === 1 ? 2 : 1;
  const toPartition0 = ["-p", "0"];

  // SIGKILL: no controller is left to take `other` out of the ISR, so the leader waits for it until the
  // request's timeout. The record is in the leader's log all the same and becomes visible once `other` is back.
  await cluster.killBroker(other);
  const timedOut = await produce(cluster.kcatArgs("plaintext"), topic, ["timed out"], [...toPartition0, "-X", "retries=0", "-X", "request.timeout.ms=3000"]);
  expect(timedOut.code).not.toBe(0);
  expect(timedOut.errors).toContain("Broker: Request timed out");
  await cluster.startBroker(other);

  // Controlled shutdown: the quorum still stands while `other` leaves, so the ISR shrinks to the leader alone.
  await cluster.stopBroker(other);
  await waitFor(`ISR [${survivor}] for ${topic}[0] on broker ${survivor}`, async () => (await topicAt(survivor, topic))?.partitions[0]?.isr.join() === String(survivor), 30_000, 200);
  const refused = await produce(cluster.kcatArgs("plaintext"), topic, ["refused"], [...toPartition0, "-X", "retries=0"]);
  expect(refused.code).not.toBe(0);
  expect(refused.errors).toContain("Broker: Not enough in-sync replicas");

  await Promise.all([cluster.startBroker(other), cluster.startBroker(3)]);
  for (const id of BROKER_IDS) {
    const t = await topicAt(id, topic);
    expect(t?.brokers).toEqual([1, 2, 3]);
    for (const p of t?.partitions ?? []) expect(sorted(p.isr)).toEqual([1, 2, 3]);
  }
  await produced(cluster.kcatArgs("plaintext"), topic, ["after"], toPartition0);
  expect(values(await cluster.consumeAll(topic))).toEqual(["timed out", "after"]);
}, 150_000);

/** Pids of processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text)) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

test("stop() stops and reaps every JVM and removes the directory; a second stop() does nothing", async () => {
  const pids = BROKER_IDS.map((id) => cluster.brokerPid(id));
  expect(pids.every((p) => typeof p === "number")).toBe(true);
  expect(processesMentioning(cluster.dir).sort()).toEqual((pids as number[]).sort());
  await cluster.stop();
  for (const pid of pids) expect(existsSync(`/proc/${pid}`)).toBe(false);
  expect(processesMentioning(cluster.dir)).toEqual([]);
  expect(existsSync(cluster.dir)).toBe(false);
  expect(cluster.runningBrokers()).toEqual([]);
  await cluster.stop();
});
