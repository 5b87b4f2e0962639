/**
 * Fluentd Forward Protocol v1, client side (pure: no sockets).
 *
 *   PackedForward           = [ tag, entries, option ]      entries = bin: concatenated msgpack Entry values
 *   CompressedPackedForward = [ tag, gzip(entries), option ] option.compressed = "gzip"
 *   Entry                   = [ EventTime, record ]
 *   EventTime               = ext type 0, 8 bytes: uint32 BE seconds, uint32 BE nanoseconds
 *   option                  = { "size": entry count, "chunk": base64 id, ["compressed": "gzip"] }
 *   Ack (server → client)   = { "ack": chunk }
 *
 * Handshake, when the server is configured with a shared key:
 *   HELO (server) = [ "HELO", { "nonce": bin, "auth": salt (bin/str, "" without user auth), "keepalive": bool } ]
 *   PING (client) = [ "PING", self_hostname, shared_key_salt, hex(sha512(salt + self_hostname + nonce + key)),
 *                     username, hex(sha512(auth + username + password)) ]
 *   PONG (server) = [ "PONG", auth_result, reason, server_hostname, hex(sha512(salt + server_hostname + nonce + key)) ]
 */
import { gzipSync } from "node:zlib";
import { Encoder, ExtensionCodec } from "@msgpack/msgpack";
import { MsgpackWriter } from "../../core/msgpack.ts";
import type { LogRecord } from "../../core/record.ts";

/** A record's time as the EventTime extension. */
export class EventTime {
  constructor(
    readonly sec: number,
    readonly nsec: number,
  ) {}
}

export const extensionCodec = new ExtensionCodec();
extensionCodec.register({
  type: 0,
  encode: (value: unknown) => {
    if (!(value instanceof EventTime)) return null;
    const bytes = new Uint8Array(8);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, value.sec >>> 0);
    view.setUint32(4, value.nsec >>> 0);
    return bytes;
  },
  decode: (data: Uint8Array) => {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    return new EventTime(view.getUint32(0), view.getUint32(4));
  },
});

const encoder = new Encoder({ extensionCodec, ignoreUndefined: true });

const entriesWriter = new MsgpackWriter();
const messageWriter = new MsgpackWriter();

/**
 * The entries of one PackedForward message: each record as [EventTime, record], concatenated (the message's
 * entries are exactly that, without an array header). Written straight into bytes; the result is a view that
 * is valid until the next call.
 */
export function encodeEntries(records: readonly LogRecord[], idField: string | undefined): Uint8Array {
  const w = entriesWriter;
  w.reset();
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    w.arrayHeader(2);
    w.ext8(0, r.timeSec, r.timeNsec);
    if (idField === undefined) w.fields(r.fields);
    else w.fields(r.fields, idField, r.id);
  }
  return w.view();
}

export interface ChunkMessage {
  bytes: Uint8Array;
  chunk: string;
  size: number;
}

export function encodePackedForward(tag: string, entries: Uint8Array, size: number, chunk: string, gzip: boolean): ChunkMessage {
  const w = messageWriter;
  w.arrayHeader(3);
  w.str(tag);
  w.bin(gzip ? gzipSync(entries) : entries);
  w.fields(gzip ? { size, chunk, compressed: "gzip" } : { size, chunk });
  return { bytes: w.take(), chunk, size };
}

/** 16 random bytes, base64: the chunk id Fluentd itself uses. */
export function newChunkId(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
}

export function sha512Hex(...parts: (string | Uint8Array)[]): string {
  const hasher = new Bun.CryptoHasher("sha512");
  for (const part of parts) hasher.update(part);
  return hasher.digest("hex");
}

export interface Helo {
  nonce: Uint8Array;
  auth: Uint8Array;
  keepalive: boolean;
}

/**
 * Server messages are decoded with raw strings: Fluent Bit sends the nonce as a msgpack str holding 16 random
 * (not UTF-8) bytes, which a text decoding would corrupt. Map keys stay strings.
 */
function text(value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString("utf8") : value;
}

/** HELO as the server sent it, or undefined when the message is not a HELO. */
export function parseHelo(message: unknown): Helo | undefined {
  if (!Array.isArray(message) || text(message[0]) !== "HELO" || typeof message[1] !== "object" || message[1] === null || message[1] instanceof Uint8Array) return undefined;
  const options = message[1] as Record<string, unknown>;
  return { nonce: asBytes(options.nonce), auth: asBytes(options.auth ?? ""), keepalive: options.keepalive !== false };
}

export interface Credentials {
  selfHostname: string;
  sharedKey: string;
  username: string;
  password: string;
}

export function encodePing(helo: Helo, credentials: Credentials, salt: string): Uint8Array {
  const { selfHostname, sharedKey, username, password } = credentials;
  const digest = sha512Hex(salt, selfHostname, helo.nonce, sharedKey);
  const passwordDigest = username === "" ? "" : sha512Hex(helo.auth, username, password);
  return encoder.encode(["PING", selfHostname, salt, digest, username, passwordDigest]).slice();
}

/**
 * Checks a PONG: undefined when the server accepted us and proved it knows the shared key, else why not, worded
 * to follow the server's name ("forward server X refused the handshake: shared_key mismatch").
 */
export function checkPong(message: unknown, helo: Helo, credentials: Credentials, salt: string): string | undefined {
  if (!Array.isArray(message) || text(message[0]) !== "PONG") return `answered the handshake with ${describe(message)} instead of PONG`;
  const [, ok, reason, serverHostname, digest] = message as [unknown, unknown, unknown, unknown, unknown];
  if (ok !== true) return `refused the handshake: ${String(text(reason) || "no reason given")}`;
  const hostnameBytes = serverHostname instanceof Uint8Array ? serverHostname : String(serverHostname);
  const expected = sha512Hex(salt, hostnameBytes, helo.nonce, credentials.sharedKey);
  if (text(digest) !== expected) return "answered with a wrong PONG digest: it does not know our shared key (or is not the server we think)";
  return undefined;
}

/** The chunk id of an ack response, or undefined when the message is not one. */
export function parseAck(message: unknown): string | undefined {
  if (typeof message !== "object" || message === null || Array.isArray(message)) return undefined;
  const ack = (message as Record<string, unknown>).ack;
  return typeof ack === "string" ? ack : ack instanceof Uint8Array ? Buffer.from(ack).toString() : undefined;
}

function asBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  return new TextEncoder().encode(typeof value === "string" ? value : "");
}

function describe(message: unknown): string {
  const text = JSON.stringify(message, (_k, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v));
  return text === undefined ? String(message) : text.slice(0, 120);
}
