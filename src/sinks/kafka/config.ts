import { z } from "zod";
import { duration, idField, inputs, size, template, tlsConfig } from "../../config/blocks/types.ts";

/** The codecs compression.ts implements; listed here so that reading a config does not load their WebAssembly. */
export const COMPRESSIONS = ["none", "gzip", "snappy", "lz4", "zstd"] as const;
export type Compression = (typeof COMPRESSIONS)[number];

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, "expected host:port");

export const kafkaSinkConfig = z
  .strictObject({
    type: z.literal("kafka"),
    inputs,
    brokers: z.array(hostPort).min(1, "at least one broker (host:port) is needed").describe("Bootstrap brokers, host:port."),
    topic: template("Topic for each record: a template of {{source}}, {{stream}}, {{field.NAME}}. A topic that renders empty is a per-record error (dead-lettered)."),
    key: template("Message key template; records with the same key go to the same partition in order. Without it, records of one stream share a partition.").optional(),
    client_id: z.string().min(1).default("nagare").describe("Kafka client id."),
    acks: z
      .enum(["all", "leader", "none"])
      .default("all")
      .check((ctx) => {
        if (ctx.value === "none") ctx.issues.push({ code: "custom", input: ctx.value, message: "acks: none cannot gate a cursor (nothing would confirm delivery); use all or leader" });
      })
      .describe("all: every in-sync replica has the record (default). leader: only the partition leader."),
    encoding: z.enum(["json", "msgpack"]).default("json").describe("Message value encoding of the record's fields."),
    compression: z.enum(COMPRESSIONS).default("none").describe("Compression of each record batch: none, gzip, snappy, lz4 or zstd."),
    idempotent: z
      .boolean()
      .optional()
      .describe("Idempotent producer: a retried batch is written at most once and never out of order while the agent runs. Default: on with acks: all (which it needs), off with acks: leader. Brokers that give no producer id get a WARN and delivery without it."),
    request_timeout: duration("How long the brokers may take to acknowledge a produce request.", "30s"),
    connect_timeout: duration("How long connecting to a broker (TCP, TLS, SASL) may take.", "10s"),
    max_in_flight: z.number().int().min(1).max(64).default(8).describe("Batches sent before earlier ones are acknowledged, so a distant cluster costs latency, not throughput."),
    max_in_flight_per_partition: z.number().int().min(1).max(5).default(5).describe("Produce requests in flight per partition (a broker deduplicates the last 5 of a producer)."),
    allow_auto_create_topics: z.boolean().default(false).describe("Ask the brokers to create a topic that does not exist (their auto.create.topics.enable must allow it too)."),
    metadata_max_age: duration("How long a topic's partitions and leaders are used before they are asked again (errors that mean they changed refresh them at once).", "5m"),
    max_message_bytes: size("The largest record batch sent (before compression); a record whose message alone is larger is dead-lettered without being sent. Keep it at or below the topic's max.message.bytes.", "1MB"),
    tls: tlsConfig.optional(),
    sasl: z
      .strictObject({
        mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"]).describe("SASL mechanism."),
        username: z.string().min(1),
        password: z.string().min(1).describe("Use ${VAR} to take it from the environment."),
      })
      .optional()
      .describe("SASL authentication."),
    id_field: idField,
  })
  .check((ctx) => {
    if (ctx.value.idempotent === true && ctx.value.acks !== "all") {
      ctx.issues.push({ code: "custom", input: ctx.value, path: ["idempotent"], message: "idempotence needs acks: all; set idempotent: false to use acks: leader" });
    }
  })
  .describe("Produces records to Kafka; a batch is acknowledged only when the brokers acknowledged all of its messages.");

export type KafkaSinkConfig = z.output<typeof kafkaSinkConfig>;
