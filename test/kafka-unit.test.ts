/**
 * The Kafka sink's pure parts (record batches, requests, JSON, the error table, config) and its delivery logic
 * — pipelining, ordering, idempotence, retries, isolation of refused records — driven by the real SinkDriver
 * against a scripted broker (test/support/kafka-fake.ts). End-to-end behaviour is tested against a real
 * Kafka cluster (kafka-cluster.test.ts) and librdkafka's mock cluster (kafka.test.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { decode } from "@msgpack/msgpack";
import { murmur2 as libraryMurmur2, Reader, readRecordsBatch } from "@platformatic/kafka";
import { Batch } from "../src/core/batch.ts";
import { DeadLetterFile } from "../src/core/dead-letter.ts";
import { describeError, NagareError } from "../src/core/errors.ts";
import { encodeFieldsJson, JsonWriter } from "../src/core/json.ts";
import type { LogRecord } from "../src/core/record.ts";
import { SinkDriver } from "../src/core/sink-driver.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { loadConfigText, validateConfig } from "../src/config/load.ts";
import { createKafkaClient } from "../src/sinks/kafka/client.ts";
import { encodeValue, legalTopic, murmur2, partitionFor } from "../src/sinks/kafka/codec.ts";
import { COMPRESSIONS } from "../src/sinks/kafka/compression.ts";
import { kafkaSinkConfig } from "../src/sinks/kafka/config.ts";
import { classifyKafkaCode, classifyKafkaName, KafkaFailure, transportFailureName } from "../src/sinks/kafka/errors.ts";
import { decodeMetadata, decodeProduce, encodeProduce, pickVersion, Reader as ResponseReader } from "../src/sinks/kafka/protocol.ts";
import { RecordBatchBuilder, stamp } from "../src/sinks/kafka/record-batch.ts";
import { KafkaSink } from "../src/sinks/kafka/sink.ts";
import { FakeKafka, type Fault } from "./support/kafka-fake.ts";
import { tempDir, waitFor } from "./support/util.ts";

function record(seq: number, fields: Record<string, unknown> = {}, stream = "journal"): LogRecord {
  return {
    timeSec: 1_700_000_000 + seq, timeNsec: 123_456_789, fields: { SEQ: String(seq), MESSAGE: `m${seq}`, ...(fields as object) }, binaryFields: undefined,
    source: "journal", stream, id: `id-${seq}`, size: 100, position: seq,
  };
}

const encoder = new TextEncoder();

describe("record batch (magic 2), read back by an independent decoder", () => {
  test("records, keys, the id header, timestamps and offsets; the CRC covers attributes to the end", () => {
    const builder = new RecordBatchBuilder();
    const times = [1_700_000_000_123, 1_700_000_000_100, 1_700_000_000_456];
    times.forEach((t, i) => expect(builder.add(t, i === 1 ? undefined : `key-${i}`, encoder.encode(`{"n":${i},"é":"ü"}`), "nagare-id", `id-${i}`, 1 << 20)).toBe(true));
    const { bytes, records } = builder.finish("none");
    expect(records).toBe(3);
    const batch = readRecordsBatch(Reader.from(bytes));
    expect([batch.magic, batch.lastOffsetDelta, Number(batch.firstTimestamp), Number(batch.maxTimestamp), Number(batch.producerId), batch.firstSequence]).toEqual([2, 2, times[0]!, times[2]!, -1, -1]);
    expect(batch.records.map((r) => [r.key?.toString() ?? null, r.value?.toString(), r.offsetDelta, Number(batch.firstTimestamp) + Number(r.timestampDelta)])).toEqual([
      ["key-0", '{"n":0,"é":"ü"}', 0, times[0]!],
      [null, '{"n":1,"é":"ü"}', 1, times[1]!],
      ["key-2", '{"n":2,"é":"ü"}', 2, times[2]!],
    ]);
    expect(batch.records.map((r) => r.headers.map(([k, v]) => `${k}=${v}`))).toEqual([["nagare-id=id-0"], ["nagare-id=id-1"], ["nagare-id=id-2"]]);
    expect(bytes.readInt32BE(8)).toBe(bytes.length - 12);
    expect(batch.crc).toBe(crc32cOf(bytes.subarray(21)));
  });

  test("stamping writes producer id, epoch and base sequence and keeps the CRC right", () => {
    const builder = new RecordBatchBuilder();
    builder.add(1, undefined, encoder.encode("x"), "nagare-id", "a", 1000);
    const { bytes } = builder.finish("none");
    stamp(bytes, { producerId: 2 ** 40 + 7, producerEpoch: 3, baseSequence: 123_456 });
    const batch = readRecordsBatch(Reader.from(bytes));
    expect([Number(batch.producerId), batch.producerEpoch, batch.firstSequence]).toEqual([2 ** 40 + 7, 3, 123_456]);
    expect(batch.crc).toBe(crc32cOf(bytes.subarray(21)));
  });

  test.each(COMPRESSIONS.filter((c) => c !== "none"))("%s compression decodes to the same records", (codec) => {
    const builder = new RecordBatchBuilder();
    for (let i = 0; i < 200; i++) builder.add(1_700_000_000_000 + i, undefined, encoder.encode(`{"MESSAGE":"line ${i} ${"abc".repeat(i % 9)}"}`), "nagare-id", `id-${i}`, 1 << 20);
    const plain = builder.size;
    const { bytes } = builder.finish(codec);
    expect(bytes.length).toBeLessThan(plain);
    const batch = readRecordsBatch(Reader.from(bytes));
    expect(batch.attributes & 7).toBe({ gzip: 1, snappy: 2, lz4: 3, zstd: 4 }[codec]);
    expect(batch.records.map((r) => r.value?.toString())).toEqual(Array.from({ length: 200 }, (_, i) => `{"MESSAGE":"line ${i} ${"abc".repeat(i % 9)}"}`));
    expect(batch.crc).toBe(crc32cOf(bytes.subarray(21)));
  });

  test("add refuses a record that would take the batch past the limit, and reuses the builder after finish", () => {
    const builder = new RecordBatchBuilder();
    const value = encoder.encode("v".repeat(100));
    let added = 0;
    while (builder.add(5, "k", value, "nagare-id", "id", 1000)) added++;
    expect(added).toBeGreaterThan(5);
    expect(builder.size).toBeLessThanOrEqual(1000);
    const first = builder.finish("none");
    expect(readRecordsBatch(Reader.from(first.bytes)).records).toHaveLength(added);
    expect(builder.add(5, "k", value, "nagare-id", "id", 1000)).toBe(true);
    expect(readRecordsBatch(Reader.from(builder.finish("none").bytes)).records).toHaveLength(1);
    expect(builder.add(5, "k", encoder.encode("v".repeat(2000)), "nagare-id", "id", 1000)).toBe(false);
  });
});

function crc32cOf(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe("requests and responses", () => {
  test("Produce: one topic entry per topic, partitions with their batch as RECORDS", () => {
    const a = Buffer.from([1, 2, 3]);
    const b = Buffer.from([4]);
    const body = Buffer.concat(encodeProduce(-1, 30_000, [{ topic: "t", partition: 0, batch: a }, { topic: "t", partition: 2, batch: b }, { topic: "u", partition: 1, batch: b }]));
    const expected = Buffer.concat([
      Buffer.from([0xff, 0xff]), // transactional_id null
      Buffer.from([0xff, 0xff]), // acks -1
      Buffer.from([0, 0, 0x75, 0x30]), // timeout 30000
      Buffer.from([0, 0, 0, 2]), // two topics
      Buffer.from([0, 1, 0x74]), Buffer.from([0, 0, 0, 2]), // "t", two partitions
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]),
      Buffer.from([0, 0, 0, 2, 0, 0, 0, 1, 4]),
      Buffer.from([0, 1, 0x75]), Buffer.from([0, 0, 0, 1]), // "u", one partition
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 4]),
    ]);
    expect(body.equals(expected)).toBe(true);
  });

  test("Produce response v7 and v8 (record errors and the broker's message)", () => {
    const v7 = Buffer.from([0, 0, 0, 1, 0, 1, 0x74, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, ...int64(99), ...int64(-1), ...int64(0), 0, 0, 0, 0]);
    expect(decodeProduce(7, new ResponseReader(v7))).toEqual([{ topic: "t", partition: 2, errorCode: 10, baseOffset: 99, message: null }]);
    const msg = Buffer.from("too big");
    const v8 = Buffer.from([0, 0, 0, 1, 0, 1, 0x74, 0, 0, 0, 1, 0, 0, 0, 0, 0, 87, ...int64(-1), ...int64(-1), ...int64(0), 0, 0, 0, 1, 0, 0, 0, 4, 0xff, 0xff, 0, msg.length, ...msg, 0, 0, 0, 0]);
    expect(decodeProduce(8, new ResponseReader(v8))).toEqual([{ topic: "t", partition: 0, errorCode: 87, baseOffset: -1, message: "too big" }]);
  });

  test("Metadata v1 and v8: brokers, topic errors, leaders by partition index", () => {
    const broker = [0, 0, 0, 7, 0, 9, ...Buffer.from("127.0.0.1"), 0, 0, 0x23, 0x84, 0xff, 0xff];
    const partition = (index: number, leader: number, extra: number[]) => [0, 0, ...int32(index), ...int32(leader), ...extra, 0, 0, 0, 1, ...int32(leader), 0, 0, 0, 1, ...int32(leader)];
    const v1 = Buffer.from([0, 0, 0, 1, ...broker, ...int32(7), 0, 0, 0, 2, 0, 0, 0, 1, 0x74, 0, 0, 0, 0, 2, ...partition(1, 7, []), ...partition(0, 7, []), 0, 17, 0, 2, 0x3f, 0x21, 0, 0, 0, 0, 0]);
    expect(decodeMetadata(1, new ResponseReader(v1))).toEqual({
      brokers: [{ nodeId: 7, host: "127.0.0.1", port: 9092 }],
      topics: [
        { errorCode: 0, name: "t", partitions: [{ errorCode: 0, index: 1, leader: 7 }, { errorCode: 0, index: 0, leader: 7 }] },
        { errorCode: 17, name: "?!", partitions: [] },
      ],
    });
    const v8 = Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, ...broker, 0xff, 0xff, ...int32(7), 0, 0, 0, 1, 0, 0, 0, 1, 0x74, 0, 0, 0, 0, 1, ...partition(0, -1, [0, 0, 0, 5]).slice(0, 14), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeMetadata(8, new ResponseReader(v8)).topics).toEqual([{ errorCode: 0, name: "t", partitions: [{ errorCode: 0, index: 0, leader: -1 }] }]);
  });

  test("versions: the highest both sides speak, none when the ranges do not meet", () => {
    expect(pickVersion(0, new Map([[0, [0, 7]]]))).toBe(7);
    expect(pickVersion(0, new Map([[0, [3, 12]]]))).toBe(8);
    expect(pickVersion(3, new Map([[3, [0, 2]]]))).toBe(2);
    expect(pickVersion(3, new Map([[3, [9, 13]]]))).toBeUndefined();
    expect(pickVersion(22, new Map())).toBeUndefined();
  });
});

function int32(n: number): number[] {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return [...b];
}

function int64(n: number): number[] {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return [...b];
}

describe("JSON written as bytes equals JSON.stringify's", () => {
  test.each([
    ["plain", { MESSAGE: "hello", PRIORITY: "6" }],
    ["escapes and controls", { MESSAGE: 'say "hi"\\ \n\t\u0001', "we\"ird": "x" }],
    ["non-ASCII, emoji and a lone surrogate", { MESSAGE: "grüße 東京 🎉", BAD: "a\ud800b" }],
    ["repeated field, numbers, nested map", { TAG: ["a", "b"], n: 5, ok: true, labels: { "app.kubernetes.io/name": "x" } }],
    ["integer-like keys first, as JSON.stringify orders them", { b: "1", 10: "x", a: "2", 2: "y" }],
    ["empty", {}],
  ])("%s", (_name, fields) => {
    const r = { ...record(1), fields: fields as LogRecord["fields"] };
    for (const idField of [undefined, "_nagare_id"]) {
      const writer = new JsonWriter();
      writer.record(r, idField, 10);
      expect(writer.view().toString()).toBe(`${encodeFieldsJson(r, idField)}\n`);
    }
  });

  test("binary fields are base64 and listed", () => {
    const r = { ...record(1), fields: { BLOB: new Uint8Array([0xff, 0]), MESSAGE: "x" }, binaryFields: ["BLOB"] };
    const writer = new JsonWriter();
    writer.record(r, undefined);
    expect(JSON.parse(writer.view().toString())).toEqual({ BLOB: "/wA=", MESSAGE: "x", _nagare_binary: ["BLOB"] });
  });
});

describe("codec, topics, error table", () => {
  test("murmur2 matches @platformatic/kafka's (the Java client's) for many keys", () => {
    for (let i = 0; i < 2000; i++) {
      const key = Buffer.from(`key-${i}-${"x".repeat(i % 7)}`);
      expect(murmur2(key)).toBe(libraryMurmur2(key, false));
    }
    expect(partitionFor("21", 3)).toBe((libraryMurmur2(Buffer.from("21"), false) & 0x7fffffff) % 3);
  });

  test("message values: JSON as the shared JSON shape; msgpack with bytes as bin and the id field", () => {
    const r = { ...record(1), fields: { BLOB: new Uint8Array([0xff, 0]), MESSAGE: "x" }, binaryFields: ["BLOB"] };
    expect(decode(encodeValue(r, "msgpack", undefined))).toEqual({ BLOB: new Uint8Array([0xff, 0]), MESSAGE: "x" });
    expect(decode(encodeValue(r, "msgpack", "_nagare_id"))).toEqual({ BLOB: new Uint8Array([0xff, 0]), MESSAGE: "x", _nagare_id: "id-1" });
    expect(JSON.parse(Buffer.from(encodeValue(r, "json", "_nagare_id")).toString())).toEqual({ BLOB: "/wA=", MESSAGE: "x", _nagare_binary: ["BLOB"], _nagare_id: "id-1" });
  });

  test("legal topic names: 1-249 of A-Z a-z 0-9 . _ -, not . or ..", () => {
    for (const ok of ["logs", "a.b_c-D9", "x".repeat(249)]) expect(legalTopic(ok)).toBe(true);
    for (const bad of ["", ".", "..", "with space", "ü", "a/b", "x".repeat(250)]) expect(legalTopic(bad)).toBe(false);
  });

  test.each([
    ["REQUEST_TIMED_OUT", "retry"], ["NOT_ENOUGH_REPLICAS", "retry"], ["LEADER_NOT_AVAILABLE", "retry"], ["NOT_LEADER_OR_FOLLOWER", "retry"],
    ["MESSAGE_TOO_LARGE", "record"], ["INVALID_RECORD", "record"], ["INVALID_TOPIC_EXCEPTION", "topic"], ["OUT_OF_ORDER_SEQUENCE_NUMBER", "sequence"],
    ["UNKNOWN_PRODUCER_ID", "sequence"], ["DUPLICATE_SEQUENCE_NUMBER", "duplicate"], ["UNKNOWN_TOPIC_OR_PARTITION", "config"],
    ["TOPIC_AUTHORIZATION_FAILED", "config"], ["SASL_AUTHENTICATION_FAILED", "config"], ["SOMETHING_NEW", "retry"],
  ])("%s is %s", (name, kind) => {
    expect(classifyKafkaName(name).kind).toBe(kind as "retry");
  });

  test("codes and socket failures are named", () => {
    expect(classifyKafkaCode(19).name).toBe("NOT_ENOUGH_REPLICAS");
    expect(classifyKafkaCode(9999).name).toBe("KAFKA_ERROR_9999");
    const socketError = (message: string, code: string) => Object.assign(new Error(message), { code });
    expect(transportFailureName(socketError("self-signed certificate in certificate chain", "SELF_SIGNED_CERT_IN_CHAIN"))).toBe("TLS_FAILED");
    expect(transportFailureName(socketError("connect ECONNREFUSED 127.0.0.1:9093", "ECONNREFUSED"))).toBe("CONNECTION_REFUSED");
    expect(transportFailureName(new Error("Request timed out"))).toBe("REQUEST_TIMED_OUT");
    expect(transportFailureName(socketError("read ECONNRESET", "ECONNRESET"))).toBe("NETWORK_EXCEPTION");
    expect(classifyKafkaName("TLS_FAILED").fix).toMatch(/tls\.ca/);
  });

  test("a failure is a NagareError carrying the broker's code; only a refusal of the records themselves is SINK_REJECTED, not retryable", () => {
    const facts = (f: KafkaFailure) => [f.kafkaCode, f.classified.name, f.code, f.retryable];
    expect(new KafkaFailure(classifyKafkaCode(10), "refused")).toBeInstanceOf(NagareError);
    expect(facts(new KafkaFailure(classifyKafkaCode(10), "refused"))).toEqual([10, "MESSAGE_TOO_LARGE", "SINK_REJECTED", false]);
    expect(facts(new KafkaFailure(classifyKafkaCode(17), "refused"))).toEqual([17, "INVALID_TOPIC_EXCEPTION", "SINK_REJECTED", false]);
    expect(facts(new KafkaFailure(classifyKafkaCode(19), "short"))).toEqual([19, "NOT_ENOUGH_REPLICAS", "SINK_UNAVAILABLE", true]);
    // A wrong password or a missing topic holds the records until the operator fixes it.
    expect(facts(new KafkaFailure(classifyKafkaCode(58), "refused"))).toEqual([58, "SASL_AUTHENTICATION_FAILED", "SINK_UNAVAILABLE", true]);
    expect(facts(new KafkaFailure(classifyKafkaCode(3), "unknown"))).toEqual([3, "UNKNOWN_TOPIC_OR_PARTITION", "SINK_UNAVAILABLE", true]);
    // A socket's failure is said again in the words of the first caller that knows what it was doing, by its
    // root cause; callers further out keep those words.
    const socket = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9093"), { code: "ECONNREFUSED" });
    const inner = KafkaFailure.ofConnection(socket, "127.0.0.1:9093");
    const outer = KafkaFailure.from(inner, "connecting to the brokers (127.0.0.1:9093)");
    expect(outer.message).toBe("connecting to the brokers (127.0.0.1:9093) failed (CONNECTION_REFUSED: connect ECONNREFUSED 127.0.0.1:9093)");
    expect(describeError(outer)).toBe(outer.message);
    expect(outer.cause).toBe(socket);
    expect(facts(outer)).toEqual([undefined, "CONNECTION_REFUSED", "SINK_UNAVAILABLE", true]);
    expect(KafkaFailure.from(outer, "preparing a batch")).toBe(outer);
    // A broker's own answer keeps its words.
    const answer = new KafkaFailure(classifyKafkaCode(58), "broker 1 refused the SASL PLAIN login of nagare");
    expect(KafkaFailure.from(answer, "connecting to the brokers")).toBe(answer);
  });
});

describe("config", () => {
  const base = { sources: { j: { type: "journald" } }, sinks: { k: { type: "kafka", inputs: ["j"], brokers: ["127.0.0.1:9092"], topic: "logs" } } };
  const problems = (sink: Record<string, unknown>) => {
    const r = validateConfig({ ...base, sinks: { k: { ...base.sinks.k, ...sink } } });
    return r.ok ? [] : r.problems;
  };
  test("defaults: acks all with idempotence, json, no compression, 8 batches and 5 requests per partition in flight, no auto-creation", () => {
    const c = kafkaSinkConfig.parse(base.sinks.k);
    expect([c.acks, c.idempotent, c.encoding, c.compression, c.client_id, c.request_timeout, c.max_in_flight, c.max_in_flight_per_partition, c.allow_auto_create_topics]).toEqual(["all", undefined, "json", "none", "nagare", 30_000, 8, 5, false]);
  });
  test("refuses no brokers, acks none, idempotence with acks leader, a bad template, a bad broker address, an unknown codec", () => {
    expect(problems({ brokers: [] })).toEqual(["sinks.k.brokers: needs at least 1 item(s)"]);
    expect(problems({ acks: "none" })[0]).toMatch(/^sinks\.k\.acks: acks: none cannot gate a cursor/);
    expect(problems({ acks: "leader", idempotent: true })[0]).toMatch(/^sinks\.k\.idempotent: idempotence needs acks: all/);
    expect(problems({ acks: "leader" })).toEqual([]);
    expect(problems({ topic: "logs-{{host}}" })[0]).toMatch(/^sinks\.k\.topic: unknown placeholder/);
    expect(problems({ key: "{{field.}}" })[0]).toMatch(/^sinks\.k\.key: unknown placeholder/);
    expect(problems({ brokers: ["kafka"] })[0]).toBe("sinks.k.brokers[0]: expected host:port");
    expect(problems({ tls: { cert: "/x" } })[0]).toBe("sinks.k.tls.key: cert and key go together");
    expect(problems({ compression: "brotli" })[0]).toMatch(/^sinks\.k\.compression:/);
    expect(problems({ max_in_flight_per_partition: 6 })[0]).toMatch(/^sinks\.k\.max_in_flight_per_partition:/);
  });

  test("sasl takes its password from the environment through ${VAR}; TLS files are read when the client is made", () => {
    const text = `sources: {j: {type: journald}}\nsinks:\n  k: {type: kafka, inputs: [j], brokers: ["b:9092"], topic: t, sasl: {mechanism: scram-sha-512, username: nagare, password: "\${KAFKA_PASSWORD}"}}\n`;
    const loaded = loadConfigText(text, "x.yaml", { KAFKA_PASSWORD: "s3cret" });
    expect(loaded.ok).toBe(true);
    const sink = loaded.ok ? loaded.config.sinks.k : undefined;
    expect(sink?.type === "kafka" && sink.sasl).toEqual({ mechanism: "scram-sha-512", username: "nagare", password: "s3cret" });
    const missing = loadConfigText(text, "x.yaml", {});
    expect(missing.ok ? [] : missing.problems).toEqual(["sinks.k.sasl.password: environment variable KAFKA_PASSWORD is not set (use ${KAFKA_PASSWORD:-default} for a default)"]);
    expect(() => createKafkaClient(kafkaSinkConfig.parse({ type: "kafka", inputs: ["j"], brokers: ["b:9093"], topic: "t", tls: { ca: "/nonexistent/ca.pem" } }))).toThrow(/ENOENT/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Delivery logic: the real driver and sink against the scripted broker

interface Harness {
  fake: FakeKafka;
  enqueue(records: LogRecord[]): Batch;
  settled(n: number): Promise<unknown>;
  deadLetters(): { id: string; reason: string }[];
  logs(): { level: string; msg: string }[];
  /** Failed delivery attempts so far (the driver's counter). */
  retries(): number;
  stop(): Promise<void>;
}

const tmp = tempDir();
afterAll(() => tmp.cleanup());
let harnesses = 0;

function harness(extra: Record<string, unknown> = {}, fake = new FakeKafka()): Harness {
  const dir = join(tmp.path, `harness-${++harnesses}`);
  mkdirSync(dir);
  const logPath = join(dir, "agent.log");
  const log = new Logger("debug", { fd: openSync(logPath, "w") });
  const metrics = new Metrics();
  const config = kafkaSinkConfig.parse({ type: "kafka", inputs: ["journal"], brokers: ["127.0.0.1:1"], topic: "logs", ...extra });
  const sink = new KafkaSink("k", config, fake, log, metrics);
  const deadLetters = new DeadLetterFile(dir);
  const driver = new SinkDriver(sink, deadLetters, log, metrics, { retryInitialMs: 1, retryMaxMs: 4 });
  const done: Batch[] = [];
  let seq = 0;
  return {
    fake,
    enqueue(records) {
      const batch = new Batch("journal", seq++, records, records.length * 100, ["k"], (b) => done.push(b));
      driver.enqueue(batch);
      return batch;
    },
    settled: (n) => waitFor(`${n} batches settled`, () => done.length >= n, 10_000),
    deadLetters: () => (existsSync(deadLetters.pathOf("k")) ? readFileSync(deadLetters.pathOf("k"), "utf8").trim().split("\n").map((l) => JSON.parse(l)) : []),
    logs: () => readFileSync(logPath, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)),
    retries: () => metrics.read("nagare_sink_retries_total", { sink: "k" }),
    stop: () => driver.stop(),
  };
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const batchesOf = (count: number, size: number) => range(0, count).map((b) => range(b * size, size).map((i) => record(i)));
const ids = (records: { id: string }[]) => records.map((r) => r.id);

/** The log of one partition holds exactly these ids in this order, with contiguous sequence numbers per producer. */
function expectExactlyInOrder(fake: FakeKafka, partition: number, expected: string[]): void {
  const log = fake.log("logs", partition);
  expect(ids(log)).toEqual(expected);
  for (let i = 1; i < log.length; i++) {
    if (log[i]!.producerId === log[i - 1]!.producerId && log[i]!.producerId >= 0) expect(log[i]!.sequence).toBe(log[i - 1]!.sequence + 1);
  }
}

const journalPartition = partitionFor("journal", 3);

describe("delivery: pipelined, ordered, idempotent", () => {
  test("batches of one stream are in flight together, and arrive in order, each once, with contiguous sequence numbers", async () => {
    const h = harness();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    h.fake.fault = (_d, call) => (call < 5 ? { hold: gate } : undefined);
    const batches = batchesOf(12, 50);
    for (const b of batches) h.enqueue(b);
    await waitFor("5 produce requests held at once", () => h.fake.produceCalls >= 5, 5000);
    expect(h.fake.inFlightPeak).toBe(5); // max_in_flight_per_partition: the 6th waits although 8 batches are in flight
    release();
    await h.settled(12);
    expectExactlyInOrder(h.fake, journalPartition, ids(batches.flat()));
    expect(new Set(h.fake.all().map((r) => r.producerId)).size).toBe(1);
    await h.stop();
  });

  test("a refused batch holds back the later ones; all go again oldest first with their sequence numbers; nothing twice", async () => {
    const h = harness();
    h.fake.fault = (_d, call) => (call === 2 ? { code: "NOT_ENOUGH_REPLICAS" } : undefined);
    const batches = batchesOf(10, 30);
    for (const b of batches) h.enqueue(b);
    await h.settled(10);
    expectExactlyInOrder(h.fake, journalPartition, ids(batches.flat()));
    expect(h.logs().some((l) => l.level === "error" && /could not deliver a batch of 30 records.*NOT_ENOUGH_REPLICAS/.test(l.msg))).toBe(true);
    expect(h.logs().some((l) => /delivers again after 1 failed attempts/.test(l.msg))).toBe(true);
    await h.stop();
  });

  test("a request that timed out after the broker wrote it is not written again; later batches flow", async () => {
    const h = harness();
    h.fake.fault = (_d, call) => (call === 1 ? { transport: "after" } : undefined);
    const batches = batchesOf(12, 20);
    for (const b of batches.slice(0, 8)) h.enqueue(b);
    await h.settled(8);
    const retries = h.retries();
    for (const b of batches.slice(8)) h.enqueue(b);
    await h.settled(12);
    expect(h.retries()).toBe(retries);
    expectExactlyInOrder(h.fake, journalPartition, ids(batches.flat()));
    await h.stop();
  });

  test("a broker that cannot be reached: the same batches are sent again once it can", async () => {
    const h = harness();
    h.fake.fault = (_d, call) => (call < 6 ? { transport: "before" } : undefined);
    const batches = batchesOf(6, 10);
    for (const b of batches) h.enqueue(b);
    await h.settled(6);
    expectExactlyInOrder(h.fake, journalPartition, ids(batches.flat()));
    await h.stop();
  });

  test("a broker that lost the producer's state: a new producer id, the pending batches sequenced anew, nothing lost", async () => {
    const h = harness();
    const firstBatches = batchesOf(3, 10);
    for (const b of firstBatches) h.enqueue(b);
    await h.settled(3);
    const firstId = h.fake.all()[0]!.producerId;
    h.fake.forgotten.add(firstId);
    const later = batchesOf(6, 10).slice(3);
    for (const b of later) h.enqueue(b);
    await h.settled(6);
    expectExactlyInOrder(h.fake, journalPartition, ids([...firstBatches, ...later].flat()));
    const after = h.fake.log("logs", journalPartition).slice(30);
    expect(new Set(after.map((r) => r.producerId))).toEqual(new Set([firstId + 1]));
    expect(after[0]!.sequence).toBe(0);
    await h.stop();
  });

  test("brokers that give no producer id: one WARN, delivery without idempotence", async () => {
    const fake = new FakeKafka();
    fake.initProducerIdFailure = "UNSUPPORTED_VERSION";
    const h = harness({}, fake);
    const batches = batchesOf(4, 10);
    for (const b of batches) h.enqueue(b);
    await h.settled(4);
    expect(ids(fake.log("logs", journalPartition))).toEqual(ids(batches.flat()));
    expect(new Set(fake.all().map((r) => r.producerId))).toEqual(new Set([-1]));
    expect(h.logs().filter((l) => l.level === "warn" && /no producer id \(UNSUPPORTED_VERSION\).*without idempotence/.test(l.msg))).toHaveLength(1);
    await h.stop();
  });

  test("a producer id that cannot be had for now (SASL refused): retried, and idempotence kept once it comes", async () => {
    const fake = new FakeKafka();
    fake.initProducerIdFailures.push("SASL_AUTHENTICATION_FAILED", "SASL_AUTHENTICATION_FAILED");
    const h = harness({}, fake);
    const batches = batchesOf(3, 10);
    for (const b of batches) h.enqueue(b);
    await h.settled(3);
    expectExactlyInOrder(fake, journalPartition, ids(batches.flat()));
    expect(fake.all().every((r) => r.producerId >= 0)).toBe(true);
    expect(h.logs().some((l) => l.level === "error" && /SASL_AUTHENTICATION_FAILED.*check sasl\.username/.test(l.msg))).toBe(true);
    expect(h.logs().some((l) => l.level === "warn")).toBe(false);
    await h.stop();
  });

  test("keyed records go where the Java client puts them, in order per key", async () => {
    const h = harness({ key: "{{field.K}}" });
    const records = range(0, 300).map((i) => record(i, { K: `host-${i % 7}` }));
    h.enqueue(records.slice(0, 150));
    h.enqueue(records.slice(150));
    await h.settled(2);
    for (let p = 0; p < 3; p++) expectExactlyInOrder(h.fake, p, ids(records.filter((r) => partitionFor(String(r.fields.K), 3) === p)));
    expect(h.fake.all().every((r) => r.key === JSON.parse(r.value).K)).toBe(true);
    await h.stop();
  });
});

describe("delivery: records and topics Kafka can never take", () => {
  test("MESSAGE_TOO_LARGE: the batch is halved until the big records stand alone; only they are dead-lettered, the rest in order", async () => {
    const h = harness();
    const tooLarge = (data: { batch: Buffer }): Fault => (readRecordsBatch(Reader.from(data.batch)).records.some((r) => r.value?.toString().includes("BIG")) ? { code: "MESSAGE_TOO_LARGE" } : undefined);
    h.fake.fault = (data) => tooLarge(data);
    const records = range(0, 40).map((i) => record(i, i === 7 || i === 30 ? { BIG: "x" } : {}));
    const later = range(40, 10).map((i) => record(i));
    h.enqueue(records);
    h.enqueue(later);
    await h.settled(2);
    expect(h.deadLetters().map((d) => [d.id, d.reason])).toEqual([["id-7", "Kafka refused it: MESSAGE_TOO_LARGE"], ["id-30", "Kafka refused it: MESSAGE_TOO_LARGE"]]);
    expectExactlyInOrder(h.fake, journalPartition, ids([...records, ...later].filter((r) => r.fields.BIG === undefined)));
    await h.stop();
  });

  test("topics: an empty or illegal name and one the brokers call invalid are dead-lettered; the rest is delivered", async () => {
    const h = harness({ topic: "{{field.T}}" });
    h.fake.topicFailures.set("refused", "INVALID_TOPIC_EXCEPTION");
    const records = [record(0, { T: "logs" }), record(1), record(2, { T: "bad topic!" }), record(3, { T: "refused" }), record(4, { T: "logs" })];
    h.enqueue(records);
    await h.settled(1);
    expect(ids(h.fake.all())).toEqual(["id-0", "id-4"]);
    expect(h.deadLetters().map((d) => [d.id, d.reason.replace(/ \(.*/, "")])).toEqual([
      ["id-1", 'the topic template "{{field.T}}" rendered empty'],
      ["id-2", 'the topic "bad topic!" is not a legal Kafka topic name'],
      ["id-3", "Kafka refused the topic refused: INVALID_TOPIC_EXCEPTION"],
    ]);
    await h.stop();
  });

  test("a topic the broker refuses on produce: every batch for it is dead-lettered, none holds the partition back", async () => {
    const h = harness({ topic: "{{field.T}}" });
    h.fake.fault = (data) => (data.topic === "internal" ? { code: "INVALID_TOPIC_EXCEPTION" } : undefined);
    const batches = range(0, 3).map((b) => range(b * 10, 10).map((i) => record(i, { T: i % 2 === 0 ? "internal" : "logs" })));
    for (const b of batches) h.enqueue(b);
    await h.settled(3);
    h.enqueue(range(30, 4).map((i) => record(i, { T: "internal" })));
    await h.settled(4);
    expect(h.retries()).toBe(0);
    const bySeq = (a: string, b: string) => Number(a.slice(3)) - Number(b.slice(3));
    expect(h.deadLetters().map((d) => d.id).sort(bySeq)).toEqual(ids([...batches.flat(), ...range(30, 4).map((i) => record(i))].filter((r) => Number(r.fields.SEQ) >= 30 || Number(r.fields.SEQ) % 2 === 0)));
    expect(ids(h.fake.all())).toEqual(ids(batches.flat().filter((r) => Number(r.fields.SEQ) % 2 === 1)));
    await h.stop();
  });

  test("a record larger than max_message_bytes alone is dead-lettered without being sent; a larger batch is split", async () => {
    const h = harness({ max_message_bytes: 2000 });
    const records = range(0, 30).map((i) => record(i, i === 3 ? { PAD: "p".repeat(3000) } : {}));
    h.enqueue(records);
    await h.settled(1);
    expect(h.deadLetters().map((d) => d.id)).toEqual(["id-3"]);
    expectExactlyInOrder(h.fake, journalPartition, ids(records.filter((r) => r.id !== "id-3")));
    expect(h.fake.produceCalls).toBeGreaterThan(1);
    await h.stop();
  });
});

describe("delivery: the setup is wrong", () => {
  test("an authorization error is retried, with the fix in the ERROR, until it is fixed", async () => {
    const h = harness();
    h.fake.fault = (_d, call) => (call < 3 ? { code: "TOPIC_AUTHORIZATION_FAILED" } : undefined);
    h.enqueue(batchesOf(1, 5)[0]!);
    await h.settled(1);
    expect(h.logs().some((l) => l.level === "error" && /TOPIC_AUTHORIZATION_FAILED.*to fix: grant the agent's principal WRITE/.test(l.msg))).toBe(true);
    expect(ids(h.fake.all())).toEqual(ids(batchesOf(1, 5)[0]!));
    await h.stop();
  });

  test("an unknown topic is retried with an ERROR naming the fix, and delivered once it exists", async () => {
    const h = harness();
    h.fake.topicFailures.set("logs", "UNKNOWN_TOPIC_OR_PARTITION");
    h.enqueue(batchesOf(1, 5)[0]!);
    await waitFor("the ERROR naming the fix", () => h.logs().some((l) => l.level === "error" && /UNKNOWN_TOPIC_OR_PARTITION.*create the topic/.test(l.msg)), 5000);
    h.fake.topicFailures.clear();
    await h.settled(1);
    expect(h.fake.all()).toHaveLength(5);
    await h.stop();
  });
});
