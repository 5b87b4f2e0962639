import { z } from "zod";
import { duration, idField, inputs, template, tlsConfig } from "../../config/blocks/types.ts";

const server = z
  .strictObject({
    host: z.string().min(1).describe("Aggregator host name or address."),
    port: z.coerce.number().int().min(1).max(65535).default(24224).describe("Aggregator port (in_forward)."),
    weight: z.number().int().min(1).max(100).default(60).describe("Share of batches among the healthy active servers."),
    standby: z.boolean().default(false).describe("Used only while every active server is down."),
  })
  .describe("One forward server.");

export const forwardSinkConfig = z
  .strictObject({
    type: z.literal("forward"),
    inputs,
    servers: z.array(server).min(1, "at least one server is needed").describe("Fluentd / Fluent Bit in_forward servers."),
    tag: template("Tag for each record: a template of {{source}}, {{stream}}, {{field.NAME}}. A tag that renders empty is dead-lettered."),
    require_ack: z.boolean().default(true).describe("Wait for the server's ack of each chunk before acknowledging the batch (at-least-once). Without it, a chunk counts as delivered once written to the socket (and a new connection without shared_key first listens 500 ms for a HELO, so that no chunk goes to a server that requires shared_key)."),
    ack_timeout: duration("No ack within this long: the connection is closed and the same chunk is sent again.", "30s"),
    connect_timeout: duration("How long connecting (TCP, TLS and the handshake) may take.", "10s"),
    compress: z.enum(["none", "gzip"]).default("none").describe("gzip sends CompressedPackedForward."),
    max_in_flight: z.number().int().min(1).max(256).default(48).describe("Batches in flight at once: their chunks are sent before earlier acks arrive, so a distant or slow-acking server costs latency, not throughput. Also the most chunks awaiting acks on one connection."),
    shared_key: z.string().min(1).optional().describe("Shared key of the server's <security> section: enables the handshake. Use ${VAR}."),
    self_hostname: z.string().min(1).optional().describe("Our name in the handshake (default: this host's name)."),
    username: z.string().min(1).optional().describe("User for the server's user authentication."),
    password: z.string().min(1).optional().describe("Password for the server's user authentication. Use ${VAR}."),
    tls: tlsConfig.optional(),
    id_field: idField,
  })
  .check((ctx) => {
    const c = ctx.value;
    if ((c.username === undefined) !== (c.password === undefined)) {
      ctx.issues.push({ code: "custom", input: c, path: [c.username === undefined ? "username" : "password"], message: "username and password go together" });
    }
    if (c.username !== undefined && c.shared_key === undefined) {
      ctx.issues.push({ code: "custom", input: c, path: ["shared_key"], message: "user authentication needs shared_key (it is part of the handshake)" });
    }
    if (c.servers.every((s) => s.standby)) {
      ctx.issues.push({ code: "custom", input: c, path: ["servers"], message: "at least one server must not be standby" });
    }
  })
  .describe("Sends records to Fluentd or Fluent Bit aggregators over the forward protocol, with chunk acks, handshake, TLS and failover.");

export type ForwardSinkConfig = z.output<typeof forwardSinkConfig>;
export type ForwardServerConfig = z.output<typeof server>;
