/**
 * The Kafka test harness (librdkafka's mock cluster + kcat, test/support/kafka.ts) proven with kafkajs, and the
 * behaviour of kafkajs 2.2.4 against it pinned down: what producer.send throws for a down broker, a hung broker
 * and each injected Produce error. The Kafka sink's error table is written from these facts.
 *
 * Under `bun test` NODE_ENV is "test", which makes kafkajs load its TEST retry defaults (retries 15,
 * initialRetryTime 50 ms, maxRetryTime 1 s instead of 5 / 300 ms / 30 s): every client here sets retry explicitly.
 */
import { describe, expect, test } from "bun:test";
import { Kafka, logLevel, type Producer, type RecordMetadata } from "kafkajs";
import { buildMock, consumeAll, startConsumer, startMockCluster, waitUntil, type MockCluster } from "./support/kafka.ts";

const T = 60_000;

interface ErrorInfo {
  name: string;
  type?: string;
  code?: string | number;
  retriable?: boolean;
  message: string;
  cause?: ErrorInfo;
}

function info(e: unknown): ErrorInfo {
  const o = e as { name: string; type?: string; code?: string | number; retriable?: boolean; message: string; cause?: unknown };
  const r: ErrorInfo = { name: o.name, message: o.message };
  if (o.type !== undefined) r.type = o.type;
  if (o.code !== undefined) r.code = o.code;
  if (o.retriable !== undefined) r.retriable = o.retriable;
  if (o.cause !== undefined && o.cause !== null) r.cause = info(o.cause);
  return r;
}

/** producer.send's outcome and how long it took. */
async function timedSend(producer: Producer, topic: string, value: string, partition = 0): Promise<{ ms: number; ok?: RecordMetadata[]; error?: ErrorInfo }> {
  const t0 = performance.now();
  try {
    const ok = await producer.send({ topic, acks: -1, messages: [{ key: value, value, partition }] });
    return { ms: performance.now() - t0, ok };
  } catch (e) {
    return { ms: performance.now() - t0, error: info(e) };
  }
}

/** A kafkajs client that never retries on its own (client and producer level), 2 s request timeout. */
function noRetryClient(brokers: string[]): Kafka {
  return new Kafka({ clientId: "nagare-test", brokers, logLevel: logLevel.NOTHING, requestTimeout: 2000, connectionTimeout: 1000, retry: { retries: 0 } });
}

async function withCluster(opts: Parameters<typeof startMockCluster>[0], fn: (mock: MockCluster) => Promise<void>): Promise<void> {
  const mock = await startMockCluster(opts);
  try {
    await fn(mock);
  } finally {
    await mock.stop();
  }
}

async function leaderOf(kafka: Kafka, topic: string, partition: number): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    const p = md.topics[0]?.partitions.find((x) => x.partitionId === partition);
    if (!p) throw new Error(`no metadata for ${topic}/${partition}`);
    return p.leader;
  } finally {
    await admin.disconnect();
  }
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

describe("kafka mock harness", () => {
  test("builds, starts, answers commands, refuses bad ones, stops and is reaped", async () => {
    await buildMock();
    const mock = await startMockCluster({ brokers: 2, topics: [{ name: "a", partitions: 2 }] });
    expect(mock.brokers).toHaveLength(2);
    for (const b of mock.brokers) expect(b).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(mock.bootstrap).toBe(mock.brokers.join(","));
    await mock.command("ping");
    await mock.command("topic b 3 1");
    await expect(mock.command("topic b 3 1")).rejects.toThrow(/TOPIC_ALREADY_EXISTS/);
    await expect(mock.command("errors Produce 1 NO_SUCH_ERROR")).rejects.toThrow(/unknown error name/);
    await expect(mock.command("errors Metadata 1 LEADER_NOT_AVAILABLE")).rejects.toThrow(/never injects errors into Metadata/);
    await expect(mock.command("down 7")).rejects.toThrow(/BROKER_NOT_AVAILABLE/);
    await expect(mock.command("bogus")).rejects.toThrow(/unknown command/);
    await mock.command("errors Produce 2 REQUEST_TIMED_OUT");
    await mock.command("clear Produce");
    await mock.command("broker-errors 1 Produce 2 NOT_ENOUGH_REPLICAS:50 MESSAGE_TOO_LARGE");
    await mock.command("rtt -1 0");
    await mock.command("leader b 0 2");
    await mock.command("topic-error b NO_ERROR");
    await mock.stop();
    expect(isGone(mock.pid)).toBe(true);
    await expect(mock.command("ping")).rejects.toThrow(/after stop/);
    await mock.stop(); // idempotent
  }, T);

  test("the mock exits on SIGTERM and stop() still reaps", async () => {
    const mock = await startMockCluster({ brokers: 1 });
    process.kill(mock.pid, "SIGTERM");
    await mock.stop();
    expect(isGone(mock.pid)).toBe(true);
  }, T);

  test("kafkajs acks -1: keys, headers, binary values read back with consumeAll", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "logs", partitions: 3 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        const before = Date.now();
        for (let batch = 0; batch < 3; batch++) {
          const messages = Array.from({ length: 100 }, (_, j) => {
            const i = batch * 100 + j;
            return { key: `k-${i % 40}`, value: JSON.stringify({ i, msg: `ログ ${i} "quoted"\n` }), headers: { "nagare-id": `id-${i}`, seq: String(i) } };
          });
          const res = await producer.send({ topic: "logs", acks: -1, messages });
          for (const r of res) expect(r.errorCode).toBe(0);
        }
        const binary = Buffer.from([0xff, 0x00, 0x0a, 0x22, 0x5c, 0xe3, 0x83, 0xad]);
        await producer.send({ topic: "logs", acks: -1, messages: [{ key: null, value: binary, partition: 1, headers: { "nagare-id": "bin" } }] });

        const got = await consumeAll(mock.bootstrap, "logs");
        expect(got).toHaveLength(301);
        const partitions = new Set(got.map((m) => m.partition));
        expect(partitions.size).toBe(3); // 40 keys spread over all partitions
        for (const p of partitions) {
          const offs = got.filter((m) => m.partition === p).map((m) => m.offset);
          expect(offs).toEqual(offs.map((_, i) => i)); // contiguous from 0: nothing trimmed
        }
        const byId = new Map(got.map((m) => [m.headers["nagare-id"], m]));
        const partitionOfKey = new Map<string, number>();
        for (let i = 0; i < 300; i++) {
          const m = byId.get(`id-${i}`);
          expect(m).toBeDefined();
          if (!m) continue;
          expect(m.key).toBe(`k-${i % 40}`);
          expect(JSON.parse(m.value ?? "")).toEqual({ i, msg: `ログ ${i} "quoted"\n` });
          expect(m.headers.seq).toBe(String(i));
          expect(m.headerList).toEqual([["nagare-id", `id-${i}`], ["seq", String(i)]]);
          expect(m.timestamp).toBeGreaterThanOrEqual(before - 1000);
          expect(m.timestamp).toBeLessThanOrEqual(Date.now() + 1000);
          const p = partitionOfKey.get(m.key ?? "");
          if (p === undefined) partitionOfKey.set(m.key ?? "", m.partition);
          else expect(m.partition).toBe(p); // same key, same partition
        }
        // Within a partition, order is send order.
        for (const p of partitions) {
          const seqs = got.filter((m) => m.partition === p && m.headers.seq !== undefined).map((m) => Number(m.headers.seq));
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        }
        const bin = byId.get("bin");
        expect(bin?.key).toBeNull();
        expect(bin?.partition).toBe(1);
        expect(Buffer.from(bin?.valueBytes ?? new Uint8Array()).equals(binary)).toBe(true);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("leader down: send fails at once with a connection error; after up the same producer sends again", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 3 }] }, async (mock) => {
      // Deterministic: kafkajs bootstraps from broker 1 only, partition 0 is led by broker 2. (With several
      // bootstrap brokers kafkajs picks one at random and a metadata refresh may hit the down one.)
      await mock.command("leader t 0 2");
      const kafka = noRetryClient([mock.brokers[0] ?? ""]);
      expect(await leaderOf(kafka, "t", 0)).toBe(2);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        expect((await timedSend(producer, "t", "before")).ok).toBeDefined();
        await mock.command("down 2");

        const first = await timedSend(producer, "t", "down-1");
        const second = await timedSend(producer, "t", "down-2");
        for (const r of [first, second]) {
          expect(r.error?.name).toBe("KafkaJSNumberOfRetriesExceeded");
          expect(r.error?.retriable).toBe(false);
          expect(r.ms).toBeLessThan(1500); // refused at once, no request timeout involved
        }
        // The mock closed the old connection; the first send may still meet it closing.
        expect(["KafkaJSConnectionError", "KafkaJSConnectionClosedError"]).toContain(first.error?.cause?.name ?? "");
        expect(second.error?.cause).toMatchObject({ name: "KafkaJSConnectionError", code: "ECONNREFUSED", retriable: true });
        expect(second.error?.message).toMatch(/^Connection error: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);

        await mock.command("up 2");
        const after = await timedSend(producer, "t", "after-up");
        expect(after.error).toBeUndefined();

        const got = (await consumeAll(mock.bootstrap, "t")).filter((m) => m.partition === 0).map((m) => m.value);
        expect(got).toEqual(["before", "after-up"]);
        console.log(`kafka-mock: leader down -> first ${JSON.stringify(first.error)} after ${first.ms.toFixed(0)} ms; then ${JSON.stringify(second.error)} after ${second.ms.toFixed(0)} ms`);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("all brokers down: KafkaJSNonRetriableError wrapping the connection error; up again: same producer works", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        expect((await timedSend(producer, "t", "before")).ok).toBeDefined();
        await mock.command("down -1");
        await timedSend(producer, "t", "down-1"); // may meet the closing connection
        const r = await timedSend(producer, "t", "down-2");
        expect(r.error).toMatchObject({ name: "KafkaJSNonRetriableError", retriable: false, cause: { name: "KafkaJSConnectionError", code: "ECONNREFUSED", retriable: true } });
        expect(r.ms).toBeLessThan(1500);
        await mock.command("up -1");
        expect((await timedSend(producer, "t", "after")).error).toBeUndefined();
        expect((await consumeAll(mock.bootstrap, "t")).map((m) => m.value)).toEqual(["before", "after"]);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("leader moved: the old leader answers NOT_LEADER_FOR_PARTITION, kafkajs refreshes metadata, the next send works", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      await mock.command("leader t 0 2");
      const kafka = noRetryClient([mock.brokers[0] ?? ""]);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        expect((await timedSend(producer, "t", "on-2")).error).toBeUndefined();
        await mock.command("leader t 0 3");
        const r = await timedSend(producer, "t", "moved");
        expect(r.error).toMatchObject({ name: "KafkaJSNumberOfRetriesExceeded", cause: { name: "KafkaJSProtocolError", type: "NOT_LEADER_FOR_PARTITION", retriable: true } });
        expect((await timedSend(producer, "t", "on-3")).error).toBeUndefined();
        expect((await consumeAll(mock.bootstrap, "t")).map((m) => m.value)).toEqual(["on-2", "on-3"]);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("a request in flight when its broker goes down fails with Closed connection, yet was written", async () => {
    await withCluster({ brokers: 2, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      await mock.command("leader t 0 2");
      const kafka = new Kafka({ clientId: "nagare-test", brokers: [mock.brokers[0] ?? ""], logLevel: logLevel.NOTHING, requestTimeout: 10_000, retry: { retries: 0 } });
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        await mock.command("broker-errors 2 Produce 1 NO_ERROR:5000"); // append now, answer in 5 s
        const pending = timedSend(producer, "t", "in-flight");
        await waitUntil(async () => (await consumeAll(mock.bootstrap, "t")).length === 1, "the in-flight record to be appended");
        await mock.command("down 2");
        const r = await pending;
        expect(r.error).toMatchObject({ name: "KafkaJSNumberOfRetriesExceeded", retriable: false, message: "Closed connection", cause: { name: "KafkaJSConnectionClosedError", retriable: true } });
        await mock.command("up 2");
        expect((await consumeAll(mock.bootstrap, "t")).map((m) => m.value)).toEqual(["in-flight"]); // a retry would duplicate it
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("a hung broker: KafkaJSRequestTimeoutError after requestTimeout, and the record was written anyway", async () => {
    await withCluster({ brokers: 1, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        await mock.command("broker-errors 1 Produce 1 NO_ERROR:3000");
        const r = await timedSend(producer, "t", "slow");
        expect(r.error).toMatchObject({
          name: "KafkaJSNumberOfRetriesExceeded",
          retriable: false,
          message: "Request Produce(key: 0, version: 7) timed out",
          cause: { name: "KafkaJSRequestTimeoutError", retriable: true },
        });
        expect(r.ms).toBeGreaterThanOrEqual(1900);
        expect(r.ms).toBeLessThan(2900);
        // The late response (at 3 s) is dropped by kafkajs; the connection stays usable.
        expect((await timedSend(producer, "t", "next")).error).toBeUndefined();
        expect((await consumeAll(mock.bootstrap, "t")).map((m) => m.value)).toEqual(["slow", "next"]);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("injected Produce errors: what kafkajs throws with retries 0; nothing of the failed send is written", async () => {
    // [mock error name, kafkajs type, code, protocol-level retriable, wrapped in KafkaJSNumberOfRetriesExceeded]
    const cases: [string, string, number, boolean][] = [
      ["REQUEST_TIMED_OUT", "REQUEST_TIMED_OUT", 7, true],
      ["NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS", 19, true],
      ["NOT_ENOUGH_REPLICAS_AFTER_APPEND", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", 20, true],
      ["LEADER_NOT_AVAILABLE", "LEADER_NOT_AVAILABLE", 5, true],
      ["NOT_LEADER_FOR_PARTITION", "NOT_LEADER_FOR_PARTITION", 6, true],
      ["UNKNOWN_TOPIC_OR_PARTITION", "UNKNOWN_TOPIC_OR_PARTITION", 3, true],
      ["NETWORK_EXCEPTION", "NETWORK_EXCEPTION", 13, true],
      ["CORRUPT_MESSAGE", "CORRUPT_MESSAGE", 2, true],
      ["MESSAGE_TOO_LARGE", "MESSAGE_TOO_LARGE", 10, false],
      ["RECORD_LIST_TOO_LARGE", "RECORD_LIST_TOO_LARGE", 18, false],
      ["INVALID_RECORD", "INVALID_RECORD", 87, false],
      ["TOPIC_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED", 29, false],
    ];
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      const table: string[] = [];
      try {
        for (const [mockName, type, code, retriable] of cases) {
          await mock.command(`errors Produce 1 ${mockName}`);
          const r = await timedSend(producer, "t", `fail-${mockName}`);
          const protocolError = { name: "KafkaJSProtocolError", type, code, retriable };
          if (retriable) {
            // Retriable protocol errors: retries exhausted -> wrapper (not retriable), original in .cause.
            expect(r.error).toMatchObject({ name: "KafkaJSNumberOfRetriesExceeded", retriable: false, cause: protocolError });
            expect(r.error?.message).toBe(r.error?.cause?.message ?? "");
          } else {
            // Non-retriable protocol errors are thrown as they are.
            expect(r.error).toMatchObject(protocolError);
            expect(r.error?.cause).toBeUndefined();
          }
          expect(r.ms).toBeLessThan(1000);
          table.push(`${mockName} -> ${JSON.stringify(r.error)}`);
          expect((await timedSend(producer, "t", `ok-${mockName}`)).error).toBeUndefined();
        }
        // _TRANSPORT: the mock closes the connection when the request arrives (nothing appended).
        await mock.command("errors Produce 1 TRANSPORT");
        const t = await timedSend(producer, "t", "fail-TRANSPORT");
        expect(t.error).toMatchObject({ name: "KafkaJSNumberOfRetriesExceeded", retriable: false, message: "Closed connection", cause: { name: "KafkaJSConnectionClosedError", retriable: true } });
        table.push(`TRANSPORT -> ${JSON.stringify(t.error)}`);
        expect((await timedSend(producer, "t", "ok-TRANSPORT")).error).toBeUndefined();

        const values = (await consumeAll(mock.bootstrap, "t")).map((m) => m.value);
        expect(values).toEqual([...cases.map(([n]) => `ok-${n}`), "ok-TRANSPORT"]);
        console.log(`kafka-mock: injected Produce errors, kafkajs retries 0:\n  ${table.join("\n  ")}`);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("with retries, kafkajs retries injected retriable errors and the send succeeds once", async () => {
    await withCluster({ brokers: 1, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 3, initialRetryTime: 50, maxRetryTime: 200 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        await mock.command("errors Produce 3 REQUEST_TIMED_OUT NOT_ENOUGH_REPLICAS LEADER_NOT_AVAILABLE");
        expect((await timedSend(producer, "t", "eventually")).error).toBeUndefined();
        expect((await consumeAll(mock.bootstrap, "t")).map((m) => m.value)).toEqual(["eventually"]);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("the mock does not enforce message.max.bytes: a 2 MiB record is accepted", async () => {
    await withCluster({ brokers: 1, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        const big = "x".repeat(2 * 1024 * 1024);
        const res = await producer.send({ topic: "t", acks: -1, messages: [{ value: big }] });
        expect(res[0]?.errorCode).toBe(0);
        expect(res[0]?.logAppendTime).toBe("1234"); // the mock's constant LogAppendTime
        const got = await consumeAll(mock.bootstrap, "t");
        expect(got.map((m) => m.value?.length)).toEqual([big.length]);
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("Metadata auto-creates unknown topics with 4 partitions, even with allowAutoTopicCreation false", async () => {
    await withCluster({ brokers: 3 }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      try {
        expect((await timedSend(producer, "never-created", "x")).error).toBeUndefined();
        const admin = kafka.admin();
        await admin.connect();
        try {
          const md = await admin.fetchTopicMetadata({ topics: ["never-created"] });
          expect(md.topics[0]?.partitions).toHaveLength(4);
          expect(md.topics[0]?.partitions.every((p) => p.replicas.length === 3 && p.isr.length === 3)).toBe(true);
        } finally {
          await admin.disconnect();
        }
      } finally {
        await producer.disconnect();
      }
    });
  }, T);

  test("kafkajs's idempotent producer cannot connect: the mock reports controller 0, broker ids are 1..N", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const admin = kafka.admin();
      await admin.connect();
      try {
        const cluster = await admin.describeCluster();
        expect(cluster.controller).toBe(0);
        expect(cluster.brokers.map((b) => b.nodeId).sort()).toEqual([1, 2, 3]);
      } finally {
        await admin.disconnect();
      }
      // kafkajs sends a non-transactional InitProducerId to the controller it finds in Metadata.
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 1, initialRetryTime: 50 } });
      let error: ErrorInfo | undefined;
      try {
        await producer.connect();
      } catch (e) {
        error = info(e);
      } finally {
        await producer.disconnect().catch(() => undefined);
      }
      expect(error).toMatchObject({ name: "KafkaJSBrokerNotFound", retriable: true, message: "Broker 0 not found in the cached metadata" });
    });
  }, T);

  test("no SASL and no TLS: the mock listens in PLAINTEXT only", async () => {
    await withCluster({ brokers: 1 }, async (mock) => {
      const attempt = async (extra: { sasl?: { mechanism: "plain"; username: string; password: string }; ssl?: boolean }): Promise<ErrorInfo | undefined> => {
        const kafka = new Kafka({ clientId: "nagare-test", brokers: mock.brokers, logLevel: logLevel.NOTHING, connectionTimeout: 1000, requestTimeout: 2000, retry: { retries: 0 }, ...extra });
        const producer = kafka.producer({ retry: { retries: 0 } });
        try {
          await producer.connect();
          return undefined;
        } catch (e) {
          return info(e);
        } finally {
          await producer.disconnect().catch(() => undefined);
        }
      };
      // The mock does not list SaslHandshake in ApiVersions.
      expect(await attempt({ sasl: { mechanism: "plain", username: "u", password: "p" } })).toMatchObject({ name: "KafkaJSServerDoesNotSupportApiKey", retriable: false });
      // A TLS ClientHello is a protocol parse error to the mock: it drops the connection.
      expect(await attempt({ ssl: true })).toMatchObject({ name: "KafkaJSNumberOfRetriesExceeded", cause: { name: "KafkaJSConnectionError", code: "ECONNRESET" } });
    });
  }, T);

  test("background consumer keeps up with more than the mock's 5 MiB per partition; falling behind fails loudly", async () => {
    await withCluster({ brokers: 1, topics: [{ name: "big", partitions: 1 }] }, async (mock) => {
      const kafka = noRetryClient(mock.brokers);
      const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
      await producer.connect();
      const consumer = startConsumer(mock.bootstrap, "big");
      try {
        const value = (i: number): string => `${String(i).padStart(8, "0")}:${"v".repeat(1000)}`;
        const total = 12_000; // ~12 MiB through one partition
        let sent = 0;
        while (sent < total) {
          // Stay at most ~2 MiB ahead of the consumer, far below the 5 MiB the mock keeps.
          await consumer.waitFor((m) => m.length >= sent - 2000);
          await producer.send({ topic: "big", acks: -1, messages: Array.from({ length: 500 }, (_, j) => ({ value: value(sent + j) })) });
          sent += 500;
        }
        await consumer.waitFor((m) => m.length >= total);
        expect(consumer.messages.map((m) => m.offset)).toEqual(Array.from({ length: total }, (_, i) => i));
        expect(consumer.messages.every((m, i) => m.value === value(i))).toBe(true);

        // Everything older than the last ~5 MiB is gone from the mock.
        const kept = await consumeAll(mock.bootstrap, "big");
        const first = kept[0]?.offset ?? -1;
        expect(first).toBeGreaterThan(0);
        expect(kept.length * 1010).toBeLessThanOrEqual(5 * 1024 * 1024);
        expect(kept.length * 1010).toBeGreaterThan(4 * 1024 * 1024);
        expect(kept.map((m) => m.offset)).toEqual(Array.from({ length: kept.length }, (_, i) => first + i));

        // A consumer that cannot fetch while > 5 MiB is produced meets "Offset out of range" and fails.
        process.kill(consumer.pid, "SIGSTOP");
        try {
          for (let k = 0; k < 14; k++) {
            await producer.send({ topic: "big", acks: -1, messages: Array.from({ length: 500 }, (_, j) => ({ value: value(total + k * 500 + j) })) });
          }
        } finally {
          process.kill(consumer.pid, "SIGCONT");
        }
        await expect(consumer.waitFor((m) => m.length >= total + 7000, 20_000)).rejects.toThrow(/Offset out of range/);
        await expect(consumer.stop()).rejects.toThrow(/Offset out of range/);
        expect(isGone(consumer.pid)).toBe(true);
      } finally {
        await consumer.stop().catch(() => undefined);
        await producer.disconnect();
      }
    });
  }, 120_000);
});
