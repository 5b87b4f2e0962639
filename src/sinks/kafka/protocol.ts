/**
 * The Kafka requests the producer sends, as pure encoders and cursor-style decoders. Only non-flexible
 * versions are used (no tagged fields): every broker from Kafka 2.x to 4.x and librdkafka's mock cluster has
 * one in common for each API (the version is negotiated with ApiVersions, see `pickVersion`). INT64 fields are
 * read as numbers: producer ids and offsets stay far below 2^53.
 *
 * Primitive types: INT8/16/32/64 big-endian; STRING = INT16 length + UTF-8; NULLABLE_STRING length -1 = null;
 * ARRAY = INT32 count + items (-1 = null); BOOLEAN = INT8; RECORDS = INT32 length + record batch bytes.
 */
import { NagareError } from "../../core/errors.ts";

export const API_PRODUCE = 0;
export const API_METADATA = 3;
export const API_API_VERSIONS = 18;
export const API_INIT_PRODUCER_ID = 22;
export const API_SASL_HANDSHAKE = 17;
export const API_SASL_AUTHENTICATE = 36;

/** The versions this client can speak, per API. */
const SUPPORTED: Record<number, [min: number, max: number]> = {
  [API_PRODUCE]: [3, 8],
  [API_METADATA]: [1, 8],
  [API_API_VERSIONS]: [0, 0],
  [API_INIT_PRODUCER_ID]: [0, 1],
  [API_SASL_HANDSHAKE]: [1, 1],
  [API_SASL_AUTHENTICATE]: [0, 1],
};

export type ApiRanges = Map<number, [min: number, max: number]>;

/** The highest version both sides speak, or undefined when there is none. */
export function pickVersion(api: number, broker: ApiRanges): number | undefined {
  const ours = SUPPORTED[api];
  const theirs = broker.get(api);
  if (ours === undefined || theirs === undefined) return undefined;
  const version = Math.min(ours[1], theirs[1]);
  return version >= Math.max(ours[0], theirs[0]) ? version : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Cursor reader

export class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  int8(): number {
    return this.buf.readInt8(this.advance(1));
  }
  int16(): number {
    return this.buf.readInt16BE(this.advance(2));
  }
  int32(): number {
    return this.buf.readInt32BE(this.advance(4));
  }
  int64(): number {
    const at = this.advance(8);
    return this.buf.readInt32BE(at) * 0x1_0000_0000 + this.buf.readUInt32BE(at + 4);
  }
  bool(): boolean {
    return this.int8() !== 0;
  }
  nullableString(): string | null {
    const length = this.int16();
    if (length < 0) return null;
    const at = this.advance(length);
    return this.buf.toString("utf8", at, at + length);
  }
  string(): string {
    return this.nullableString() ?? "";
  }
  /** BYTES: INT32 length and the bytes (a null is empty); a view of the response. */
  bytes(): Buffer {
    const length = this.int32();
    if (length < 0) return Buffer.alloc(0);
    const at = this.advance(length);
    return this.buf.subarray(at, at + length);
  }
  array<T>(item: (r: Reader) => T): T[] {
    const count = this.int32();
    const out: T[] = [];
    for (let i = 0; i < count; i++) out.push(item(this));
    return out;
  }

  private advance(n: number): number {
    const at = this.pos;
    if (at + n > this.buf.length) throw new NagareError("MALFORMED_INPUT", `the Kafka response ends early: it needs ${n} bytes at ${at} of ${this.buf.length}`);
    this.pos = at + n;
    return at;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Request writer: small requests are built in one buffer; record batches are appended as they are.

export class RequestWriter {
  private readonly parts: Buffer[] = [];
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;

  int8(v: number): this {
    this.room(1);
    this.pos = this.buf.writeInt8(v, this.pos);
    return this;
  }
  int16(v: number): this {
    this.room(2);
    this.pos = this.buf.writeInt16BE(v, this.pos);
    return this;
  }
  int32(v: number): this {
    this.room(4);
    this.pos = this.buf.writeInt32BE(v, this.pos);
    return this;
  }
  bool(v: boolean): this {
    return this.int8(v ? 1 : 0);
  }
  nullableString(v: string | null): this {
    if (v === null) return this.int16(-1);
    const length = Buffer.byteLength(v);
    this.int16(length).room(length);
    this.pos += this.buf.write(v, this.pos, "utf8");
    return this;
  }
  /** Appends bytes without copying them into the writer. */
  bytes(b: Buffer): this {
    this.flush();
    this.parts.push(b);
    return this;
  }
  /** The request body as buffers, in order. */
  done(): Buffer[] {
    this.flush();
    return this.parts;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.flush();
    this.buf = Buffer.allocUnsafe(Math.max(256, n));
  }
  private flush(): void {
    if (this.pos === 0) return;
    this.parts.push(this.buf.subarray(0, this.pos));
    this.buf = this.buf.subarray(this.pos);
    this.pos = 0;
  }
}

// ---------------------------------------------------------------------------------------------------------
// ApiVersions v0
//   Request  => (empty)
//   Response => error_code:INT16 [api_key:INT16 min_version:INT16 max_version:INT16]

export function decodeApiVersions(r: Reader): { errorCode: number; ranges: ApiRanges } {
  const errorCode = r.int16();
  const ranges: ApiRanges = new Map();
  for (const [key, min, max] of r.array((x) => [x.int16(), x.int16(), x.int16()] as const)) ranges.set(key, [min, max]);
  return { errorCode, ranges };
}

// ---------------------------------------------------------------------------------------------------------
// Metadata v1-v8
//   Request  => topics:ARRAY(name:STRING) allow_auto_topic_creation:BOOLEAN (v4+)
//               include_cluster_authorized_operations:BOOLEAN include_topic_authorized_operations:BOOLEAN (v8+)
//   Response => throttle_time_ms:INT32 (v3+) brokers:[node_id:INT32 host:STRING port:INT32 rack:NULLABLE_STRING]
//               cluster_id:NULLABLE_STRING (v2+) controller_id:INT32
//               topics:[error_code:INT16 name:STRING is_internal:BOOLEAN
//                       partitions:[error_code:INT16 partition_index:INT32 leader_id:INT32 leader_epoch:INT32 (v7+)
//                                   replica_nodes:[INT32] isr_nodes:[INT32] offline_replicas:[INT32] (v5+)]
//                       topic_authorized_operations:INT32 (v8+)]
//               cluster_authorized_operations:INT32 (v8+)
//   Before v4 a broker may create a missing topic when asked (auto.create.topics.enable decides).

export interface BrokerAddress {
  nodeId: number;
  host: string;
  port: number;
}

export interface TopicMetadata {
  errorCode: number;
  name: string;
  /** By partition index: the leader's node id (-1 while there is none) and the partition's error code. */
  partitions: { index: number; leader: number; errorCode: number }[];
}

export interface MetadataResponse {
  brokers: BrokerAddress[];
  topics: TopicMetadata[];
}

export function encodeMetadata(version: number, topics: readonly string[], allowAutoCreate: boolean): Buffer[] {
  const w = new RequestWriter().int32(topics.length);
  for (const topic of topics) w.nullableString(topic);
  if (version >= 4) w.bool(allowAutoCreate);
  if (version >= 8) w.bool(false).bool(false);
  return w.done();
}

export function decodeMetadata(version: number, r: Reader): MetadataResponse {
  if (version >= 3) r.int32();
  const brokers = r.array((x) => {
    const broker = { nodeId: x.int32(), host: x.string(), port: x.int32() };
    x.nullableString();
    return broker;
  });
  if (version >= 2) r.nullableString();
  r.int32();
  const topics = r.array((x): TopicMetadata => {
    const errorCode = x.int16();
    const name = x.string();
    x.bool();
    const partitions = x.array((p) => {
      const partition = { errorCode: p.int16(), index: p.int32(), leader: p.int32() };
      if (version >= 7) p.int32();
      p.array((n) => n.int32());
      p.array((n) => n.int32());
      if (version >= 5) p.array((n) => n.int32());
      return partition;
    });
    if (version >= 8) x.int32();
    return { errorCode, name, partitions };
  });
  return { brokers, topics };
}

// ---------------------------------------------------------------------------------------------------------
// InitProducerId v0-v1 (an idempotent producer: no transactional id)
//   Request  => transactional_id:NULLABLE_STRING transaction_timeout_ms:INT32
//   Response => throttle_time_ms:INT32 error_code:INT16 producer_id:INT64 producer_epoch:INT16

export function encodeInitProducerId(): Buffer[] {
  return new RequestWriter().nullableString(null).int32(60_000).done();
}

export function decodeInitProducerId(r: Reader): { errorCode: number; producerId: number; producerEpoch: number } {
  r.int32();
  return { errorCode: r.int16(), producerId: r.int64(), producerEpoch: r.int16() };
}

// ---------------------------------------------------------------------------------------------------------
// Produce v3-v8
//   Request  => transactional_id:NULLABLE_STRING acks:INT16 timeout_ms:INT32
//               topic_data:[name:STRING partition_data:[index:INT32 records:RECORDS]]
//               (a partition carries exactly one record batch: brokers refuse more with magic 2)
//   Response => responses:[name:STRING partition_responses:[index:INT32 error_code:INT16 base_offset:INT64
//                          log_append_time_ms:INT64 log_start_offset:INT64 (v5+)
//                          record_errors:[batch_index:INT32 batch_index_error_message:NULLABLE_STRING] (v8+)
//                          error_message:NULLABLE_STRING (v8+)]]
//               throttle_time_ms:INT32

export interface PartitionData {
  topic: string;
  partition: number;
  batch: Buffer;
}

export interface PartitionResult {
  topic: string;
  partition: number;
  errorCode: number;
  baseOffset: number;
  /** The broker's own words (v8+), when it gave any. */
  message: string | null;
}

/** `data` must list each topic's partitions together (the caller groups them). */
export function encodeProduce(acks: number, timeoutMs: number, data: readonly PartitionData[]): Buffer[] {
  const w = new RequestWriter().nullableString(null).int16(acks).int32(timeoutMs);
  let topics = 0;
  for (let i = 0; i < data.length; i++) if (i === 0 || data[i]!.topic !== data[i - 1]!.topic) topics++;
  w.int32(topics);
  for (let i = 0; i < data.length; ) {
    const topic = data[i]!.topic;
    let end = i;
    while (end < data.length && data[end]!.topic === topic) end++;
    w.nullableString(topic).int32(end - i);
    for (; i < end; i++) w.int32(data[i]!.partition).int32(data[i]!.batch.length).bytes(data[i]!.batch);
  }
  return w.done();
}

export function decodeProduce(version: number, r: Reader): PartitionResult[] {
  const out: PartitionResult[] = [];
  const topics = r.int32();
  for (let t = 0; t < topics; t++) {
    const topic = r.string();
    const partitions = r.int32();
    for (let p = 0; p < partitions; p++) {
      const partition = r.int32();
      const errorCode = r.int16();
      const baseOffset = r.int64();
      r.int64();
      if (version >= 5) r.int64();
      let message: string | null = null;
      if (version >= 8) {
        const recordErrors = r.array((x) => `record ${x.int32()}: ${x.nullableString() ?? "refused"}`);
        message = r.nullableString() ?? (recordErrors.length > 0 ? recordErrors.join("; ") : null);
      }
      out.push({ topic, partition, errorCode, baseOffset, message });
    }
  }
  return out;
}
