import { z } from "zod";
import { duration, idField, inputs, size, template, tlsConfig } from "../../config/types.ts";

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
    compression: z.enum(["none", "gzip"]).default("none").describe("Compression of produce requests (gzip is built in; snappy/lz4/zstd need codecs not bundled)."),
    request_timeout: duration("How long the brokers may take to acknowledge a produce request.", "30s"),
    connect_timeout: duration("How long connecting to a broker may take.", "10s"),
    max_in_flight: z.number().int().min(1).max(5).default(1).describe("Produce requests in flight per broker connection; one partition never has two."),
    max_message_bytes: size("A record whose encoded message is larger is dead-lettered without being sent (brokers refuse it anyway).", "1MB"),
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
  .describe("Produces records to Kafka; a batch is acknowledged only when the brokers acknowledged all of its messages.");

export type KafkaSinkConfig = z.output<typeof kafkaSinkConfig>;
