/**
 * Pure mapping of records to Kafka messages, and the partitioner. The record batch that carries them is
 * encoded in record-batch.ts.
 *
 *   message   = key? value headers timestamp
 *   key       = the rendered `key` template (UTF-8), or none
 *   value     = the record's fields as JSON (the shared JSON shape) or msgpack (bytes as bin)
 *   headers   = "nagare-id": the record's deterministic id
 *   timestamp = the record's time in milliseconds since the epoch
 *   partition = positive(murmur2(key)) % partitions — Kafka's default partitioner, so keyed records land where
 *               any Kafka client would put them; without a key, murmur2(stream) keeps one stream's records in
 *               one partition, in order.
 */
import { JsonWriter } from "../../core/json.ts";
import { MsgpackWriter } from "../../core/msgpack.ts";
import type { LogRecord } from "../../core/record.ts";

export const ID_HEADER = "nagare-id";

export type ValueEncoding = "json" | "msgpack";

const json = new JsonWriter();
const msgpack = new MsgpackWriter();

/** The message value, JSON or msgpack: a view of a scratch buffer, valid until the next call. */
export function encodeValue(record: LogRecord, encoding: ValueEncoding, idField: string | undefined): Uint8Array {
  if (encoding === "json") {
    json.reset();
    json.record(record, idField);
    return json.view();
  }
  msgpack.reset();
  if (idField === undefined) msgpack.fields(record.fields);
  else msgpack.fields(record.fields, idField, record.id);
  return msgpack.view();
}

export function timestampMs(record: LogRecord): number {
  return record.timeSec * 1000 + Math.floor(record.timeNsec / 1e6);
}

/** Kafka's rule for topic names: 1-249 of [A-Za-z0-9._-], and not "." or "..". */
export function legalTopic(topic: string): boolean {
  return topic.length > 0 && topic.length <= 249 && topic !== "." && topic !== ".." && /^[A-Za-z0-9._-]+$/.test(topic);
}

/** Kafka's murmur2 (32-bit, seed 0x9747b28c), as in the Java client's Utils.murmur2. */
export function murmur2(data: Uint8Array): number {
  const m = 0x5bd1e995;
  const length = data.length;
  let h = 0x9747b28c ^ length;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const rest = length & 3;
  if (rest === 3) h ^= data[whole + 2]! << 16;
  if (rest >= 2) h ^= data[whole + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[whole]!, m);
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

export function partitionFor(key: string, partitions: number): number {
  return (murmur2(Buffer.from(key)) & 0x7fffffff) % partitions;
}
