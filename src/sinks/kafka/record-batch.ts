/**
 * Kafka's RecordBatch (magic 2), encoded record by record into one growing buffer — no per-record objects,
 * BigInts or intermediate buffers. A finished batch is one exact-size Buffer that every retry resends as it is;
 * only its producer id, epoch and base sequence are stamped (and its CRC recomputed) when it is (re)sequenced.
 *
 *   RecordBatch =
 *     baseOffset           int64    0 (the broker assigns offsets)
 *     batchLength          int32    bytes after this field
 *     partitionLeaderEpoch int32    -1
 *     magic                int8     2
 *     crc                  uint32   CRC-32C of every byte after this field
 *     attributes           int16    bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), 3 log-append time
 *     lastOffsetDelta      int32    records - 1
 *     baseTimestamp        int64    first record's time (ms)
 *     maxTimestamp         int64    latest record time (ms)
 *     producerId           int64    -1 without idempotence
 *     producerEpoch        int16    -1 without idempotence
 *     baseSequence         int32    -1 without idempotence
 *     recordCount          int32
 *     records              Record*  compressed as one block when attributes say so
 *
 *   Record =
 *     length         varint   bytes after this field
 *     attributes     int8     0
 *     timestampDelta varlong  ms after baseTimestamp
 *     offsetDelta    varint   index in the batch
 *     key            varint length (-1: null) + bytes
 *     value          varint length + bytes
 *     headers        varint count, then each: varint key length + key, varint value length + value
 *
 *   varint/varlong = zigzag, then 7 bits per byte, low group first, high bit set on all but the last byte
 */
import { crc32c } from "@platformatic/wasm-utils";
import { compress, COMPRESSION_ATTRIBUTE, type Compression } from "./compression.ts";

/** Bytes of the batch header before the first record. */
const BATCH_HEADER_BYTES = 61;
/** Offsets inside the header, from the start of the batch. */
const CRC_AT = 17;
const ATTRIBUTES_AT = 21;
const PRODUCER_ID_AT = 43;
const RECORDS_AT = BATCH_HEADER_BYTES;
const TWO_32 = 0x1_0000_0000;

export interface Stamp {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

export const NO_STAMP: Stamp = { producerId: -1, producerEpoch: -1, baseSequence: -1 };

export interface EncodedBatch {
  bytes: Buffer;
  records: number;
}

/**
 * Builds one batch at a time. `add` appends a record; `finish` returns the batch and starts the next one in
 * the same buffer. Strings are written straight into the buffer (one native call each).
 */
export class RecordBatchBuilder {
  private buf = Buffer.allocUnsafeSlow(256 * 1024);
  private pos = RECORDS_AT;
  private count = 0;
  private baseTimestamp = 0;
  private maxTimestamp = 0;

  /** Bytes the batch would have with no more records (uncompressed). */
  get size(): number {
    return this.pos;
  }

  get records(): number {
    return this.count;
  }

  /**
   * Appends a record unless the batch would then exceed `limit` bytes (uncompressed): returns false, and the
   * caller finishes this batch and adds the record to the next one — or, when the batch is empty, knows the
   * record alone is too large. The one header is `headerKey` (ASCII) = `headerValue`.
   */
  add(timestampMs: number, key: string | undefined, value: Uint8Array, headerKey: string, headerValue: string, limit: number): boolean {
    const keyBytes = key === undefined ? -1 : Buffer.byteLength(key);
    const valueBytes = value.length;
    const idBytes = Buffer.byteLength(headerValue);
    const delta = this.count === 0 ? 0 : timestampMs - this.baseTimestamp;
    const body = recordBodyBytes(delta, this.count, keyBytes, valueBytes, headerKey.length, idBytes);
    if (this.pos + body + varintBytes(body) > limit) return false;
    if (this.count === 0) {
      this.baseTimestamp = timestampMs;
      this.maxTimestamp = timestampMs;
    } else if (timestampMs > this.maxTimestamp) this.maxTimestamp = timestampMs;
    this.reserve(body + 5);
    const buf = this.buf;
    let p = this.writeVarint(body, this.pos);
    buf[p++] = 0;
    p = this.writeVarlong(delta, p);
    p = this.writeVarint(this.count, p);
    p = this.writeVarint(keyBytes, p);
    if (key !== undefined) p += buf.write(key, p, keyBytes, "utf8");
    p = this.writeVarint(valueBytes, p);
    buf.set(value, p);
    p += valueBytes;
    p = this.writeVarint(1, p);
    p = this.writeVarint(headerKey.length, p);
    p += buf.write(headerKey, p, headerKey.length, "latin1");
    p = this.writeVarint(idBytes, p);
    p += buf.write(headerValue, p, idBytes, "utf8");
    this.pos = p;
    this.count++;
    return true;
  }

  /** The batch so far (compressed if asked), unstamped; the builder is empty again. */
  finish(compression: Compression): EncodedBatch {
    const records = this.count;
    let bytes: Buffer;
    if (compression === "none" && this.pos * 2 >= this.buf.length) {
      // Mostly full: hand the buffer itself over (no copy) and start the next batch in a new one.
      bytes = this.buf.subarray(0, this.pos);
      this.buf = Buffer.allocUnsafeSlow(this.buf.length);
    } else {
      const body = compression === "none" ? this.buf.subarray(RECORDS_AT, this.pos) : compress(compression, this.buf.subarray(RECORDS_AT, this.pos));
      bytes = Buffer.allocUnsafeSlow(RECORDS_AT + body.length);
      bytes.set(body, RECORDS_AT);
    }
    bytes.writeInt32BE(0, 0); // baseOffset
    bytes.writeInt32BE(0, 4);
    bytes.writeInt32BE(bytes.length - 12, 8); // batchLength
    bytes.writeInt32BE(-1, 12); // partitionLeaderEpoch
    bytes[16] = 2; // magic
    bytes.writeInt16BE(COMPRESSION_ATTRIBUTE[compression], ATTRIBUTES_AT);
    bytes.writeInt32BE(records - 1, 23);
    writeInt64(bytes, this.baseTimestamp, 27);
    writeInt64(bytes, this.maxTimestamp, 35);
    bytes.writeInt32BE(records, 57);
    stamp(bytes, NO_STAMP);
    this.pos = RECORDS_AT;
    this.count = 0;
    return { bytes, records };
  }

  private reserve(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.pos + bytes));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  private writeVarint(value: number, p: number): number {
    let v = ((value << 1) ^ (value >> 31)) >>> 0;
    const buf = this.buf;
    while (v >= 0x80) {
      buf[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[p++] = v;
    return p;
  }

  /** A varlong of a value within ±2^52 (time deltas): zigzag done in doubles, no BigInt. */
  private writeVarlong(value: number, p: number): number {
    if (value >= -0x4000_0000 && value < 0x4000_0000) return this.writeVarint(value, p);
    let v = value >= 0 ? value * 2 : -value * 2 - 1;
    const buf = this.buf;
    while (v >= 0x80) {
      buf[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    buf[p++] = v;
    return p;
  }
}

/** Writes the producer id, epoch and base sequence into a finished batch and recomputes its CRC. */
export function stamp(bytes: Buffer, s: Stamp): void {
  writeInt64(bytes, s.producerId, PRODUCER_ID_AT);
  bytes.writeInt16BE(s.producerEpoch, PRODUCER_ID_AT + 8);
  bytes.writeInt32BE(s.baseSequence, PRODUCER_ID_AT + 10);
  bytes.writeUInt32BE(crc32c(bytes.subarray(ATTRIBUTES_AT)), CRC_AT);
}

function writeInt64(bytes: Buffer, value: number, at: number): void {
  const hi = Math.floor(value / TWO_32);
  bytes.writeInt32BE(hi, at);
  bytes.writeUInt32BE(value - hi * TWO_32, at + 4);
}

/** A record's bytes after its length varint. `keyBytes` -1: a null key. */
function recordBodyBytes(delta: number, offsetDelta: number, keyBytes: number, valueBytes: number, headerKeyBytes: number, headerValueBytes: number): number {
  const key = keyBytes < 0 ? 1 : varintBytes(keyBytes) + keyBytes;
  const headers = 1 + varintBytes(headerKeyBytes) + headerKeyBytes + varintBytes(headerValueBytes) + headerValueBytes;
  return 1 + varlongBytes(delta) + varintBytes(offsetDelta) + key + varintBytes(valueBytes) + valueBytes + headers;
}

function varintBytes(value: number): number {
  let v = ((value << 1) ^ (value >> 31)) >>> 0;
  let n = 1;
  while (v >= 0x80) {
    v >>>= 7;
    n++;
  }
  return n;
}

function varlongBytes(value: number): number {
  if (value >= -0x4000_0000 && value < 0x4000_0000) return varintBytes(value);
  let v = value >= 0 ? value * 2 : -value * 2 - 1;
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}
