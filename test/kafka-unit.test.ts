/**
 * The Kafka sink's pure parts and its retry logic, against a scripted ProduceClient. End-to-end behaviour
 * against a real Kafka protocol peer is in kafka.test.ts (librdkafka's mock cluster).
 */
import { describe, expect, test } from "bun:test";
import { createRequire } from "node:module";
import { decode } from "@msgpack/msgpack";
import { Batch } from "../src/core/batch.ts";
import type { LogRecord } from "../src/core/record.ts";
import { compileTemplate, type Template } from "../src/core/template.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { loadConfigText, validateConfig } from "../src/config/load.ts";
import { saslOptions, tlsOptions } from "../src/sinks/kafka/client.ts";
import type { ProduceClient } from "../src/sinks/kafka/client.ts";
import { encodeValue, murmur2, partitionFor, toMessage, type OutgoingMessage } from "../src/sinks/kafka/codec.ts";
import { kafkaSinkConfig } from "../src/sinks/kafka/config.ts";
import { classifyKafkaError } from "../src/sinks/kafka/errors.ts";
import { KafkaSink } from "../src/sinks/kafka/sink.ts";

const kafkajsMurmur2 = createRequire(import.meta.url)("kafkajs/src/producer/partitioners/default/murmur2.js") as (key: Buffer) => number;

function record(seq: number, fields: Record<string, unknown> = {}, stream = "journal"): LogRecord {
  return {
    timeSec: 1_700_000_000 + seq, timeNsec: 123_456_789, fields: { SEQ: String(seq), MESSAGE: `m${seq}`, ...(fields as object) }, binaryFields: undefined,
    source: "journal", stream, id: `id-${seq}`, size: 100, position: seq,
  };
}

describe("templates", () => {
  test("render source, stream and fields; a missing field renders empty", () => {
    const t = compileTemplate("logs-{{source}}.{{ stream }}.{{field._HOSTNAME}}") as Template;
    expect(t.render(record(1, { _HOSTNAME: "web-1" }))).toBe("logs-journal.journal.web-1");
    expect(t.render(record(1))).toBe("logs-journal.journal.");
    expect((compileTemplate("{{field.TAG}}") as Template).render(record(1, { TAG: ["a", "b"] }))).toBe("a,b");
    expect((compileTemplate("plain") as Template).constant).toBe("plain");
  });

  test("bad templates are refused with a reason", () => {
    expect(compileTemplate("{{host}}")).toMatch(/unknown placeholder \{\{host\}\}/);
    expect(compileTemplate("logs-{{source")).toMatch(/unbalanced/);
    expect(compileTemplate("{{field.}}")).toMatch(/unknown placeholder/);
  });
});

describe("codec", () => {
  test("murmur2 matches the Java client's (as implemented by kafkajs) for many keys", () => {
    for (let i = 0; i < 2000; i++) {
      const key = Buffer.from(`key-${i}-${"x".repeat(i % 7)}`);
      expect(murmur2(key)).toBe(kafkajsMurmur2(key));
    }
    expect(partitionFor("21", 3)).toBe((kafkajsMurmur2(Buffer.from("21")) & 0x7fffffff) % 3);
  });

  test("messages carry the id header and the record time in milliseconds", () => {
    const r = record(5);
    const m = toMessage(r, "k", encodeValue(r, "json", "_nagare_id"));
    expect(m.headers).toEqual({ "nagare-id": "id-5" });
    expect(m.timestamp).toBe(String((1_700_000_005) * 1000 + 123));
    expect(m.key?.toString()).toBe("k");
    expect(JSON.parse(m.value.toString())).toEqual({ SEQ: "5", MESSAGE: "m5", _nagare_id: "id-5" });
  });

  test("msgpack values keep bytes as bin", () => {
    const r = { ...record(1), fields: { BLOB: new Uint8Array([0xff, 0]), MESSAGE: "x" }, binaryFields: ["BLOB"] };
    expect(decode(encodeValue(r, "msgpack", undefined))).toEqual({ BLOB: new Uint8Array([0xff, 0]), MESSAGE: "x" });
  });
});

describe("error table", () => {
  const protocol = (type: string) => Object.assign(new Error(type), { name: "KafkaJSProtocolError", type, retriable: true });
  test.each([
    ["REQUEST_TIMED_OUT", "retry"], ["NOT_ENOUGH_REPLICAS", "retry"], ["LEADER_NOT_AVAILABLE", "retry"], ["NOT_LEADER_FOR_PARTITION", "retry"],
    ["MESSAGE_TOO_LARGE", "record"], ["INVALID_RECORD", "record"], ["UNKNOWN_TOPIC_OR_PARTITION", "config"], ["TOPIC_AUTHORIZATION_FAILED", "config"],
    ["SASL_AUTHENTICATION_FAILED", "config"], ["SOMETHING_NEW", "retry"],
  ])("%s is %s", (type, kind) => {
    expect(classifyKafkaError(protocol(type)).kind).toBe(kind as "retry");
    const wrapped = Object.assign(new Error("retries exceeded"), { name: "KafkaJSNumberOfRetriesExceeded", cause: protocol(type) });
    expect(classifyKafkaError(wrapped).name).toBe(type);
    expect(classifyKafkaError(wrapped).kind).toBe(kind as "retry");
  });
  test("connection errors are retried", () => {
    expect(classifyKafkaError(Object.assign(new Error("Connection error: connect ECONNREFUSED"), { name: "KafkaJSConnectionError" })).kind).toBe("retry");
  });
});

describe("config", () => {
  const base = { sources: { j: { type: "journald" } }, sinks: { k: { type: "kafka", inputs: ["j"], brokers: ["127.0.0.1:9092"], topic: "logs" } } };
  const problems = (sink: Record<string, unknown>) => {
    const r = validateConfig({ ...base, sinks: { k: { ...base.sinks.k, ...sink } } });
    return r.ok ? [] : r.problems;
  };
  test("defaults: acks all, json, no compression", () => {
    const c = kafkaSinkConfig.parse(base.sinks.k);
    expect([c.acks, c.encoding, c.compression, c.client_id, c.request_timeout]).toEqual(["all", "json", "none", "nagare", 30_000]);
  });
  test("refuses no brokers, acks none, a bad template, a bad broker address", () => {
    expect(problems({ brokers: [] })).toEqual(["sinks.k.brokers: needs at least 1 item(s)"]);
    expect(problems({ acks: "none" })[0]).toMatch(/^sinks\.k\.acks: acks: none cannot gate a cursor/);
    expect(problems({ topic: "logs-{{host}}" })[0]).toMatch(/^sinks\.k\.topic: unknown placeholder/);
    expect(problems({ key: "{{field.}}" })[0]).toMatch(/^sinks\.k\.key: unknown placeholder/);
    expect(problems({ brokers: ["kafka"] })[0]).toBe("sinks.k.brokers[0]: expected host:port");
    expect(problems({ tls: { cert: "/x" } })[0]).toBe("sinks.k.tls.key: cert and key go together");
  });
});

/** A ProduceClient whose answers are scripted per call: an error to throw, or nothing for success. */
class ScriptedClient implements ProduceClient {
  readonly produced: { topic: string; partition: number; messages: OutgoingMessage[] }[] = [];
  readonly failNext: ((topic: string, partition: number, messages: OutgoingMessage[]) => Error | undefined)[] = [];
  async partitions(): Promise<number> {
    return 3;
  }
  invalidate(): void {}
  async produce(topic: string, partition: number, messages: OutgoingMessage[]): Promise<void> {
    const error = this.failNext.shift()?.(topic, partition, messages);
    if (error) throw error;
    this.produced.push({ topic, partition, messages });
  }
  async close(): Promise<void> {}
}

const protocolError = (type: string) => Object.assign(new Error(type), { name: "KafkaJSProtocolError", type });

function sinkWith(client: ScriptedClient, extra: Partial<Record<string, unknown>> = {}) {
  const config = kafkaSinkConfig.parse({ type: "kafka", inputs: ["journal"], brokers: ["127.0.0.1:1"], topic: "{{field.T}}", key: "{{field.K}}", ...extra });
  return new KafkaSink("k", config, new Logger("error"), new Metrics(), client);
}

describe("kafka sink delivery logic", () => {
  test("a failed partition is sent again alone; the acknowledged ones are not repeated", async () => {
    const client = new ScriptedClient();
    const sink = sinkWith(client);
    const records = Array.from({ length: 30 }, (_, i) => record(i, { T: "logs", K: `k${i % 5}` }));
    const batch = new Batch("journal", 0, records, 3000, ["k"], () => {});
    let failed = -1;
    client.failNext.push(...[0, 1, 2].map((n) => (_t: string, p: number) => (n === 0 ? ((failed = p), protocolError("NOT_LEADER_FOR_PARTITION")) : undefined)));
    const first = await sink.send(batch);
    expect(first.status).toBe("retry");
    const sentFirst = client.produced.map((p) => p.partition);
    expect(sentFirst).not.toContain(failed);
    const second = await sink.send(batch);
    expect(second).toEqual({ status: "delivered", rejected: [] });
    expect(client.produced.map((p) => p.partition).sort()).toEqual([0, 1, 2]);
    const all = client.produced.flatMap((p) => p.messages.map((m) => JSON.parse(m.value.toString()).SEQ));
    expect(all.sort()).toEqual(records.map((r) => r.fields.SEQ).sort());
    // Per key, read order is kept inside each partition request.
    for (const p of client.produced) {
      const seqs = p.messages.map((m) => Number(JSON.parse(m.value.toString()).SEQ));
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    }
  });

  test("MESSAGE_TOO_LARGE isolates the message: it is dead-lettered, its neighbours delivered in order", async () => {
    const client = new ScriptedClient();
    const sink = sinkWith(client, { key: undefined });
    const records = Array.from({ length: 5 }, (_, i) => record(i, { T: "logs" }));
    const batch = new Batch("journal", 0, records, 500, ["k"], () => {});
    const tooLarge = (_t: string, _p: number, m: OutgoingMessage[]) => (m.some((x) => x.headers["nagare-id"] === "id-2") ? protocolError("MESSAGE_TOO_LARGE") : undefined);
    client.failNext.push(tooLarge, tooLarge, tooLarge, tooLarge, tooLarge, tooLarge);
    const result = await sink.send(batch);
    expect(result.status).toBe("delivered");
    expect(result.status === "delivered" && result.rejected?.map((r) => r.record.id)).toEqual(["id-2"]);
    expect(client.produced.flatMap((p) => p.messages.map((m) => m.headers["nagare-id"]))).toEqual(["id-0", "id-1", "id-3", "id-4"]);
  });

  test("a topic that renders empty and an oversized message are rejected without being sent", async () => {
    const client = new ScriptedClient();
    const sink = sinkWith(client, { max_message_bytes: 200 });
    const records = [record(1, { T: "logs" }), record(2), record(3, { T: "logs", BIG: "x".repeat(500) })];
    const result = await sink.send(new Batch("journal", 0, records, 300, ["k"], () => {}));
    expect(result.status === "delivered" && result.rejected?.map((r) => [r.record.id, r.reason.slice(0, 30)])).toEqual([
      ["id-2", 'the topic template "{{field.T}'],
      ["id-3", "the message is 546 bytes, over"],
    ]);
    expect(client.produced.flatMap((p) => p.messages.map((m) => m.headers["nagare-id"]))).toEqual(["id-1"]);
  });

  test("config-level errors are retried with the fix in the error", async () => {
    const client = new ScriptedClient();
    const sink = sinkWith(client);
    client.failNext.push(() => protocolError("TOPIC_AUTHORIZATION_FAILED"));
    const result = await sink.send(new Batch("journal", 0, [record(1, { T: "logs", K: "a" })], 100, ["k"], () => {}));
    expect(result.status).toBe("retry");
    expect(result.status === "retry" && (result.error as Error).message).toMatch(/TOPIC_AUTHORIZATION_FAILED.*grant the agent's principal WRITE/);
  });
});

describe("TLS and SASL options (the mock cluster is plaintext only, so these are checked as the options kafkajs gets)", () => {
  test("tls reads the CA, certificate and key files and maps verify", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "nagare-tls-"));
    for (const f of ["ca.pem", "cert.pem", "key.pem"]) writeFileSync(join(dir, f), `-----BEGIN ${f}-----\n`);
    const config = kafkaSinkConfig.parse({ type: "kafka", inputs: ["j"], brokers: ["b:9093"], topic: "t", tls: { ca: join(dir, "ca.pem"), cert: join(dir, "cert.pem"), key: join(dir, "key.pem"), verify: false, servername: "kafka.internal" } });
    expect(tlsOptions(config)).toEqual({ ca: ["-----BEGIN ca.pem-----\n"], cert: "-----BEGIN cert.pem-----\n", key: "-----BEGIN key.pem-----\n", rejectUnauthorized: false, servername: "kafka.internal" });
    expect(tlsOptions(kafkaSinkConfig.parse({ type: "kafka", inputs: ["j"], brokers: ["b:9093"], topic: "t" }))).toBeUndefined();
    expect(tlsOptions(kafkaSinkConfig.parse({ type: "kafka", inputs: ["j"], brokers: ["b:9093"], topic: "t", tls: {} }))?.rejectUnauthorized).toBe(true);
  });

  test("sasl takes its password from the environment through ${VAR}", () => {
    const text = `sources: {j: {type: journald}}\nsinks:\n  k: {type: kafka, inputs: [j], brokers: ["b:9092"], topic: t, sasl: {mechanism: scram-sha-512, username: nagare, password: "\${KAFKA_PASSWORD}"}}\n`;
    const loaded = loadConfigText(text, "x.yaml", { KAFKA_PASSWORD: "s3cret" });
    expect(loaded.ok).toBe(true);
    const sink = loaded.ok ? loaded.config.sinks.k : undefined;
    expect(sink?.type === "kafka" && saslOptions(sink)).toEqual({ mechanism: "scram-sha-512", username: "nagare", password: "s3cret" });
    const missing = loadConfigText(text, "x.yaml", {});
    expect(missing.ok ? [] : missing.problems).toEqual(["sinks.k.sasl.password: environment variable KAFKA_PASSWORD is not set (use ${KAFKA_PASSWORD:-default} for a default)"]);
    expect(validateConfig({ sources: { j: { type: "journald" } }, sinks: { k: { type: "kafka", inputs: ["j"], brokers: ["b:9092"], topic: "t", sasl: { mechanism: "gssapi", username: "u", password: "p" } } } }).ok).toBe(false);
  });
});
