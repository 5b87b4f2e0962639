/** The forward protocol codec against byte fixtures from the Forward Protocol Specification v1. */
import { describe, expect, test } from "bun:test";
import { gunzipSync } from "node:zlib";
import { decode, decodeMulti, encode } from "@msgpack/msgpack";
import { MsgpackWriter } from "../src/core/msgpack.ts";
import type { LogRecord } from "../src/core/record.ts";
import { checkPong, encodeEntries, encodePackedForward, encodePing, EventTime, extensionCodec, newChunkId, parseAck, parseHelo, sha512Hex } from "../src/sinks/forward/codec.ts";

function record(seq: number, fields: Record<string, unknown> = {}): LogRecord {
  return { timeSec: 1_700_000_000 + seq, timeNsec: 123_456_789, fields: { MESSAGE: `m${seq}`, ...(fields as object) }, binaryFields: undefined, source: "j", stream: "journal", id: `id-${seq}`, size: 1, position: seq };
}

describe("forward codec", () => {
  test("EventTime is ext type 0 with seconds and nanoseconds as big-endian uint32", () => {
    const bytes = encode(new EventTime(0x5f5e1000, 0x075bcd15), { extensionCodec });
    expect([...bytes]).toEqual([0xd7, 0x00, 0x5f, 0x5e, 0x10, 0x00, 0x07, 0x5b, 0xcd, 0x15]);
    expect(decode(bytes, { extensionCodec })).toEqual(new EventTime(0x5f5e1000, 0x075bcd15));
  });

  test("records written as msgpack decode to their fields: every string, bin, array, map and number form", () => {
    const fields = {
      short: "x", ascii: "a".repeat(31), str8: "b".repeat(32), str16: "c".repeat(300), str32: "d".repeat(70_000), utf8: "grüße 東京 🎉",
      bin8: new Uint8Array([0xff, 0]), bin16: new Uint8Array(300).fill(7), bin32: new Uint8Array(70_000).fill(9),
      array: ["a", "b"], array16: Array.from({ length: 20 }, (_, i) => String(i)), nested: { "app.kubernetes.io/name": "x", n: { deep: true } },
      numbers: [0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, 1.5, -0.25, 1e300],
      flags: [true, false],
    };
    const many: Record<string, string> = {};
    for (let i = 0; i < 20; i++) many[`k${i}`] = `v${i}`;
    for (const f of [fields, many, {}]) {
      const w = new MsgpackWriter();
      w.fields(f as never, "_nagare_id", "id-1");
      expect(decode(w.view())).toEqual({ ...f, _nagare_id: "id-1" });
      w.reset();
      w.fields(f as never);
      expect(decode(w.view())).toEqual(f);
    }
  });

  test("entries are the concatenated [time, record] values, for any count (fixarray, array16, array32 headers dropped)", () => {
    for (const n of [1, 15, 16, 70_000]) {
      const records = Array.from({ length: n }, (_, i) => record(i));
      const entries = encodeEntries(records, n === 1 ? "_nagare_id" : undefined);
      const decoded = [...decodeMulti(entries, { extensionCodec })] as [EventTime, Record<string, unknown>][];
      expect(decoded.length).toBe(n);
      expect(decoded[0]![0]).toEqual(new EventTime(1_700_000_000, 123_456_789));
      expect(decoded[n - 1]![1].MESSAGE).toBe(`m${n - 1}`);
      if (n === 1) expect(decoded[0]![1]._nagare_id).toBe("id-0");
    }
  });

  test("PackedForward and CompressedPackedForward carry tag, entries as bin, and the option", () => {
    const entries = encodeEntries([record(1), record(2)], undefined);
    const plain = decode(encodePackedForward("app.logs", entries, 2, "Y2h1bmstaWQ=", false).bytes) as [string, Uint8Array, Record<string, unknown>];
    expect(plain[0]).toBe("app.logs");
    expect(plain[1]).toEqual(entries);
    expect(plain[2]).toEqual({ size: 2, chunk: "Y2h1bmstaWQ=" });
    const gz = decode(encodePackedForward("app.logs", entries, 2, "abc", true).bytes) as [string, Uint8Array, Record<string, unknown>];
    expect(gz[2]).toEqual({ size: 2, chunk: "abc", compressed: "gzip" });
    expect(Buffer.from(gunzipSync(gz[1])).equals(Buffer.from(entries))).toBe(true);
  });

  test("chunk ids are base64 of 16 random bytes", () => {
    const id = newChunkId();
    expect(Buffer.from(id, "base64").length).toBe(16);
    expect(newChunkId()).not.toBe(id);
  });

  test("the handshake digests follow the spec; a refused or forged PONG is reported", () => {
    const nonce = new Uint8Array([1, 2, 3]);
    const helo = parseHelo(["HELO", { nonce, auth: new Uint8Array([9, 9]), keepalive: true }])!;
    expect(helo.nonce).toEqual(nonce);
    const credentials = { selfHostname: "edge-1", sharedKey: "secret", username: "alice", password: "pw" };
    const ping = decode(encodePing(helo, credentials, "salt")) as string[];
    expect(ping).toEqual(["PING", "edge-1", "salt", sha512Hex("salt", "edge-1", nonce, "secret"), "alice", sha512Hex(new Uint8Array([9, 9]), "alice", "pw")]);
    const good = ["PONG", true, "", "agg-1", sha512Hex("salt", "agg-1", nonce, "secret")];
    expect(checkPong(good, helo, credentials, "salt")).toBeUndefined();
    expect(checkPong(["PONG", false, "shared_key mismatch", "", ""], helo, credentials, "salt")).toBe("refused the handshake: shared_key mismatch");
    expect(checkPong(["PONG", true, "", "agg-1", "00"], helo, credentials, "salt")).toMatch(/wrong PONG digest/);
    expect(checkPong({ ack: "x" }, helo, credentials, "salt")).toBe('answered the handshake with {"ack":"x"} instead of PONG');
    expect(parseHelo(["PONG"])).toBeUndefined();
  });

  test("acks", () => {
    expect(parseAck({ ack: "abc" })).toBe("abc");
    expect(parseAck({ ack: new TextEncoder().encode("abc") })).toBe("abc");
    expect(parseAck(["HELO", {}])).toBeUndefined();
  });
});
