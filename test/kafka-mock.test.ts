/**
 * The Kafka test harness (librdkafka's mock cluster + kcat, test/support/kafka.ts), and what our Kafka client
 * (src/sinks/kafka/client.ts, the transport under the sink) meets there: the versions it negotiates, how a down,
 * hung or moved broker and each injected produce error look to it, and which of them leave the batch written
 * anyway. The sink's error table and the producer's idempotence rules are checked against these facts.
 */
import { describe, expect, test } from "bun:test";
import { KafkaClient, type KafkaClientOptions } from "../src/sinks/kafka/client.ts";
import { KafkaFailure, kafkaErrorName } from "../src/sinks/kafka/errors.ts";
import { RecordBatchBuilder, stamp } from "../src/sinks/kafka/record-batch.ts";
import { buildMock, consumeAll, startConsumer, startMockCluster, type MockCluster } from "./support/kafka.ts";

const T = 60_000;

function client(brokers: string[], extra: Partial<KafkaClientOptions> = {}): KafkaClient {
  return new KafkaClient({
    clientId: "nagare-test", brokers, acks: -1, produceTimeoutMs: 5000, requestTimeoutMs: 2000, connectTimeoutMs: 1000,
    tls: undefined, sasl: undefined, allowAutoCreateTopics: false, metadataMaxAgeMs: 60_000, maxTopics: 100, ...extra,
  });
}

/** One record batch of `values` (keys and ids optional), unstamped unless `seq` is given. */
function batchOf(values: (string | Uint8Array)[], opts: { keys?: (string | undefined)[]; ids?: string[]; producer?: { id: number; seq: number } } = {}): Buffer {
  const builder = new RecordBatchBuilder();
  values.forEach((v, i) => builder.add(Date.now(), opts.keys?.[i], typeof v === "string" ? Buffer.from(v) : v, "nagare-id", opts.ids?.[i] ?? `id-${i}`, 64 << 20));
  const { bytes } = builder.finish("none");
  if (opts.producer !== undefined) stamp(bytes, { producerId: opts.producer.id, producerEpoch: 0, baseSequence: opts.producer.seq });
  return bytes;
}

/** Leader of a partition, from the client's metadata. */
async function leaderOf(c: KafkaClient, topic: string, partition: number): Promise<number> {
  c.invalidate(topic);
  const state = (await c.leaders([topic])).get(topic)!;
  if ("failure" in state) throw new Error(`no leaders for ${topic}: ${state.failure.name}`);
  return state.leaders[partition]!;
}

/** Produces and returns the partition's error name, or the transport failure's name and how long it took. */
async function produce(c: KafkaClient, topic: string, partition: number, batch: Buffer): Promise<{ outcome: string; ms: number }> {
  const t0 = performance.now();
  try {
    const leader = await leaderOf(c, topic, partition);
    const result = await c.produce(leader, { topic, partition, batch });
    return { outcome: kafkaErrorName(result.errorCode), ms: performance.now() - t0 };
  } catch (err) {
    if (!(err instanceof KafkaFailure)) throw err;
    return { outcome: `transport:${err.classified.name}`, ms: performance.now() - t0 };
  }
}

async function withCluster(opts: Parameters<typeof startMockCluster>[0], fn: (mock: MockCluster) => Promise<void>): Promise<void> {
  const mock = await startMockCluster(opts);
  try {
    await fn(mock);
  } finally {
    await mock.stop();
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

const values = async (mock: MockCluster, topic: string) => (await consumeAll(mock.bootstrap, topic)).map((m) => m.value);

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
});

describe("our Kafka client against the mock", () => {
  test("keys, the id header, UTF-8 and binary values and timestamps read back with kcat", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "logs", partitions: 3 }] }, async (mock) => {
      const c = client(mock.brokers);
      try {
        const before = Date.now();
        const texts = Array.from({ length: 100 }, (_, i) => JSON.stringify({ i, msg: `ログ ${i} "quoted"\n` }));
        expect((await produce(c, "logs", 2, batchOf(texts, { keys: texts.map((_, i) => (i % 3 === 0 ? undefined : `k-${i}`)), ids: texts.map((_, i) => `id-${i}`) }))).outcome).toBe("NONE");
        const binary = Buffer.from([0xff, 0x00, 0x0a, 0x22, 0x5c, 0xe3, 0x83, 0xad]);
        expect((await produce(c, "logs", 1, batchOf([binary], { ids: ["bin"] }))).outcome).toBe("NONE");
        const got = await consumeAll(mock.bootstrap, "logs");
        expect(got.filter((m) => m.partition === 2).map((m) => [m.key, m.value, m.headerList])).toEqual(texts.map((t, i) => [i % 3 === 0 ? null : `k-${i}`, t, [["nagare-id", `id-${i}`]]]));
        expect(got.filter((m) => m.partition === 2).every((m) => m.timestamp >= before - 1000 && m.timestamp <= Date.now() + 1000)).toBe(true);
        const bin = got.find((m) => m.headers["nagare-id"] === "bin");
        expect(Buffer.from(bin!.valueBytes!).equals(binary)).toBe(true);
      } finally {
        await c.close();
      }
    });
  }, T);

  test("producer ids: the mock gives one but checks no sequence numbers (idempotence is proven on the real cluster)", async () => {
    await withCluster({ brokers: 1, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const c = client(mock.brokers);
      try {
        const { producerId } = await c.initProducerId();
        expect(producerId).toBeGreaterThanOrEqual(0);
        const b0 = batchOf(["a", "b"], { producer: { id: producerId, seq: 0 } });
        expect((await produce(c, "t", 0, b0)).outcome).toBe("NONE");
        expect((await produce(c, "t", 0, b0)).outcome).toBe("NONE"); // a real broker: DUPLICATE_SEQUENCE_NUMBER, not written
        expect((await produce(c, "t", 0, batchOf(["gap"], { producer: { id: producerId, seq: 5 } }))).outcome).toBe("NONE"); // a real broker: OUT_OF_ORDER_SEQUENCE_NUMBER
        expect(await values(mock, "t")).toEqual(["a", "b", "a", "b", "gap"]);
      } finally {
        await c.close();
      }
    });
  }, T);

  test("leader down: produce fails at once as CONNECTION_REFUSED; up again: the next produce works", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 3 }] }, async (mock) => {
      await mock.command("leader t 0 2");
      const c = client([mock.brokers[0]!]);
      try {
        expect((await produce(c, "t", 0, batchOf(["before"]))).outcome).toBe("NONE");
        await mock.command("down 2");
        await produce(c, "t", 0, batchOf(["down-1"])); // may meet the connection closing
        const second = await produce(c, "t", 0, batchOf(["down-2"]));
        expect(second.outcome).toBe("transport:CONNECTION_REFUSED");
        expect(second.ms).toBeLessThan(1500);
        await mock.command("up 2");
        expect((await produce(c, "t", 0, batchOf(["after-up"]))).outcome).toBe("NONE");
        expect((await consumeAll(mock.bootstrap, "t")).filter((m) => m.partition === 0).map((m) => m.value)).toEqual(["before", "after-up"]);
      } finally {
        await c.close();
      }
    });
  }, T);

  test("leader moved: the old leader answers NOT_LEADER_OR_FOLLOWER; fresh metadata names the new one", async () => {
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      await mock.command("leader t 0 2");
      const c = client([mock.brokers[0]!]);
      try {
        expect((await produce(c, "t", 0, batchOf(["on-2"]))).outcome).toBe("NONE");
        await mock.command("leader t 0 3");
        expect((await c.produce(2, { topic: "t", partition: 0, batch: batchOf(["moved"]) })).errorCode).toBe(6);
        expect(await leaderOf(c, "t", 0)).toBe(3);
        expect((await produce(c, "t", 0, batchOf(["on-3"]))).outcome).toBe("NONE");
        expect(await values(mock, "t")).toEqual(["on-2", "on-3"]);
      } finally {
        await c.close();
      }
    });
  }, T);

  test("a request in flight when its broker goes down fails in transport, yet was written", async () => {
    await withCluster({ brokers: 2, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      await mock.command("leader t 0 2");
      const c = client([mock.brokers[0]!], { requestTimeoutMs: 10_000 });
      try {
        const leader = await leaderOf(c, "t", 0);
        await mock.command("broker-errors 2 Produce 1 NO_ERROR:5000"); // append now, answer in 5 s
        const pending = c.produce(leader, { topic: "t", partition: 0, batch: batchOf(["in-flight"]) }).then(
          () => "answered",
          (err: KafkaFailure) => err.classified.name,
        );
        const deadline = Date.now() + 10_000;
        while ((await consumeAll(mock.bootstrap, "t")).length === 0 && Date.now() < deadline) await Bun.sleep(20);
        await mock.command("down 2");
        expect(await pending).toBe("NETWORK_EXCEPTION");
        await mock.command("up 2");
        expect(await values(mock, "t")).toEqual(["in-flight"]); // a retry with a new producer id would duplicate it
      } finally {
        await c.close();
      }
    });
  }, T);

  test("a hung broker: REQUEST_TIMED_OUT after the request timeout, and the record was written anyway", async () => {
    await withCluster({ brokers: 1, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const c = client(mock.brokers);
      try {
        await leaderOf(c, "t", 0);
        await mock.command("broker-errors 1 Produce 1 NO_ERROR:3000");
        const r = await produce(c, "t", 0, batchOf(["slow"]));
        expect(r.outcome).toBe("transport:REQUEST_TIMED_OUT");
        expect(r.ms).toBeGreaterThanOrEqual(1900);
        expect(r.ms).toBeLessThan(2900);
        // The timeout closed the connection; the next request opens a new one.
        expect((await produce(c, "t", 0, batchOf(["next"]))).outcome).toBe("NONE");
        expect(await values(mock, "t")).toEqual(["slow", "next"]);
      } finally {
        await c.close();
      }
    });
  }, T);

  test("injected produce errors come back as the partition's error; nothing of the refused batch is written", async () => {
    const names = ["REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "UNKNOWN_TOPIC_OR_PARTITION", "NETWORK_EXCEPTION", "CORRUPT_MESSAGE", "MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD", "TOPIC_AUTHORIZATION_FAILED"];
    await withCluster({ brokers: 3, topics: [{ name: "t", partitions: 1 }] }, async (mock) => {
      const c = client(mock.brokers);
      try {
        for (const name of names) {
          await mock.command(`errors Produce 1 ${name}`);
          expect((await produce(c, "t", 0, batchOf([`fail-${name}`]))).outcome).toBe(name);
          expect((await produce(c, "t", 0, batchOf([`ok-${name}`]))).outcome).toBe("NONE");
        }
        // TRANSPORT: the mock closes the connection when the request arrives (nothing appended).
        await mock.command("errors Produce 1 TRANSPORT");
        expect((await produce(c, "t", 0, batchOf(["fail-TRANSPORT"]))).outcome).toBe("transport:NETWORK_EXCEPTION");
        expect((await produce(c, "t", 0, batchOf(["ok-TRANSPORT"]))).outcome).toBe("NONE");
        expect(await values(mock, "t")).toEqual([...names.map((n) => `ok-${n}`), "ok-TRANSPORT"]);
      } finally {
        await c.close();
      }
    });
  }, T);

  test("the mock does not enforce message.max.bytes, and Metadata creates unknown topics (4 partitions)", async () => {
    await withCluster({ brokers: 3 }, async (mock) => {
      const c = client(mock.brokers);
      try {
        const state = (await c.leaders(["never-created"])).get("never-created")!;
        expect("leaders" in state && state.leaders.length).toBe(4);
        const big = "x".repeat(2 * 1024 * 1024);
        expect((await produce(c, "never-created", 0, batchOf([big]))).outcome).toBe("NONE");
        expect((await consumeAll(mock.bootstrap, "never-created")).map((m) => m.value?.length)).toEqual([big.length]);
      } finally {
        await c.close();
      }
    });
  }, T);

  test("no SASL and no TLS: the mock listens in PLAINTEXT only", async () => {
    await withCluster({ brokers: 1 }, async (mock) => {
      const attempt = async (extra: Partial<KafkaClientOptions>) => {
        const c = client(mock.brokers, extra);
        try {
          await c.initProducerId();
          return "connected";
        } catch (err) {
          return (err as KafkaFailure).classified?.name ?? String(err);
        } finally {
          await c.close();
        }
      };
      expect(await attempt({ sasl: { mechanism: "PLAIN", username: "u", password: "p" } })).not.toBe("connected");
      expect(await attempt({ tls: { ca: undefined, cert: undefined, key: undefined, rejectUnauthorized: true, servername: undefined } })).not.toBe("connected");
      expect(await attempt({})).toBe("connected");
    });
  }, T);

  test("background consumer keeps up with more than the mock's 5 MiB per partition; falling behind fails loudly", async () => {
    await withCluster({ brokers: 1, topics: [{ name: "big", partitions: 1 }] }, async (mock) => {
      const c = client(mock.brokers);
      const consumer = startConsumer(mock.bootstrap, "big");
      const value = (i: number): string => `${String(i).padStart(8, "0")}:${"v".repeat(1000)}`;
      const send = async (from: number) => expect((await produce(c, "big", 0, batchOf(Array.from({ length: 500 }, (_, j) => value(from + j))))).outcome).toBe("NONE");
      try {
        const total = 12_000; // ~12 MiB through one partition
        for (let sent = 0; sent < total; sent += 500) {
          // Stay at most ~2 MiB ahead of the consumer, far below the 5 MiB the mock keeps.
          await consumer.waitFor((m) => m.length >= sent - 2000);
          await send(sent);
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

        // A consumer that cannot fetch while > 5 MiB is produced meets "Offset out of range" and fails.
        process.kill(consumer.pid, "SIGSTOP");
        try {
          for (let k = 0; k < 14; k++) await send(total + k * 500);
        } finally {
          process.kill(consumer.pid, "SIGCONT");
        }
        await expect(consumer.waitFor((m) => m.length >= total + 7000, 20_000)).rejects.toThrow(/Offset out of range/);
        await expect(consumer.stop()).rejects.toThrow(/Offset out of range/);
        expect(isGone(consumer.pid)).toBe(true);
      } finally {
        await consumer.stop().catch(() => undefined);
        await c.close();
      }
    });
  }, 120_000);
});
