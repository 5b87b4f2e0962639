/**
 * The record-batch compression codecs Kafka knows. gzip and zstd come from Bun's zlib; snappy and lz4 from
 * @platformatic/wasm-utils (WebAssembly, so the single binary needs no native library). The whole records
 * section of a batch is compressed as one block:
 *   gzip   — a gzip member (RFC 1952)
 *   snappy — raw snappy (brokers and librdkafka read it as well as the xerial framing the Java client writes)
 *   lz4    — an LZ4 frame (the format of Kafka's KafkaLZ4BlockOutputStream since magic 1)
 *   zstd   — a zstd frame
 */
import { gzipSync, zstdCompressSync } from "node:zlib";
import { lz4Compress, snappyCompress } from "@platformatic/wasm-utils";
import { COMPRESSIONS, type Compression } from "./config.ts";

export { COMPRESSIONS, type Compression };

/** The attributes bits 0-2 of a record batch for each codec. */
export const COMPRESSION_ATTRIBUTE: Record<Compression, number> = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 };

export function compress(codec: Exclude<Compression, "none">, data: Uint8Array): Uint8Array {
  const input = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  switch (codec) {
    case "gzip":
      return gzipSync(input, { level: 6 });
    case "snappy":
      return snappyCompress(input);
    case "lz4":
      return lz4Compress(input);
    case "zstd":
      return zstdCompressSync(input);
  }
}
