/**
 * A Fluentd Forward Protocol v1 test server (the server side of https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1),
 * for end-to-end tests of the forward sink. It follows the spec, and where the spec leaves room it does what
 * Fluentd's in_forward (v1.x, lib/fluent/plugin/in_forward.rb) does:
 *
 *   - Carrier modes, chosen like in_forward by the type of the second element:
 *       Message                  [tag, time, record, option?]
 *       Forward                  [tag, [[time, record], ...], option?]
 *       PackedForward            [tag, <bin or str: concatenated msgpack [time, record] entries>, option?]
 *       CompressedPackedForward  PackedForward with option compressed: "gzip"; the entries are gzipped, possibly
 *                                as several concatenated gzip members
 *     time is EventTime (msgpack ext type 0, 8 bytes: uint32 BE seconds, uint32 BE nanoseconds) or an integer.
 *     option keys: size (event count), chunk (the client's chunk id), compressed ("gzip"; "text" = none).
 *   - Ack: `{"ack": <chunk>}` is written exactly when the option has `chunk`; the id is echoed whatever it is
 *     (no bookkeeping of ids: a resent chunk is taken in and acked again). No option or no chunk: no answer.
 *   - A msgpack nil at the top level is a TCP heartbeat and is ignored.
 *   - Handshake when a shared key is set (msgpack only). On accept the server writes
 *       ["HELO", {"nonce": bin(16 random bytes), "auth": bin(16 random bytes), "keepalive": true}]
 *     in_forward sends the user-auth salt as `auth` even when user auth is off (the spec says "" then), and
 *     sends nonce and auth as msgpack bin (Ruby binary strings). The client answers
 *       ["PING", self_hostname, shared_key_salt, hex(sha512(shared_key_salt + self_hostname + nonce + shared_key)),
 *        username, hex(sha512(auth_salt + username + password))]
 *     and the server answers
 *       ["PONG", true, "", server_hostname, hex(sha512(shared_key_salt + server_hostname + nonce + shared_key))]
 *     or on failure ["PONG", false, reason, "", ""] and closes the connection once the PONG is written.
 *     Reasons (in_forward's exact texts, checked in this order): "invalid ping message" (not a 6-element array
 *     starting with "PING" — also what a client gets for sending events before the PING), "shared_key mismatch",
 *     "username/password mismatch".
 *   - A stream that is not msgpack closes the connection (in_forward: "unexpected error on reading data", close).
 *
 * Stricter than in_forward (every such case is recorded in `protocolErrors` and closes the connection, where
 * in_forward would log and drop the data silently, without an ack): a top-level value that is not an array, a
 * tag that is not a str, a record that is not a map, a time that is not EventTime / a non-negative integer, an
 * entry that is not [time, record], an option that is not a map, a chunk id that is not a str, `size` that
 * disagrees with the number of entries, `compressed` outside PackedForward or other than "gzip"/"text", gzip
 * that does not decompress, a message over `maxMessageBytes`, and (with strictUtf8, the default) a msgpack str
 * that is not valid UTF-8 — except the PackedForward entries string, which is bytes.
 *
 * flavour "fluent-bit" mimics Fluent Bit's in_forward handshake instead (plugins/in_forward/fw_prot.c): HELO
 * is {"nonce": str, "auth": str} holding the 16 raw random bytes as msgpack *str* (not valid UTF-8) and has no
 * "keepalive" key; PING fields must all be str; a shared-key mismatch or a malformed PING closes the
 * connection without a PONG; a user/password mismatch answers ["PONG", false, "username/password mismatch", "", ""].
 */
import { createHash, randomBytes } from "node:crypto";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { Decoder, Encoder, ExtensionCodec } from "@msgpack/msgpack";

export interface ForwardServerOptions {
  port?: number; // default 0 (ephemeral) on 127.0.0.1
  tls?: { cert: string; key: string }; // PEM strings
  sharedKey?: string; // enables the handshake
  users?: Record<string, string>; // user auth (requires sharedKey)
  hostname?: string; // server hostname in PONG, default "forward-test"
  /** Whose handshake to mimic; default "fluentd". */
  flavour?: "fluentd" | "fluent-bit";
  /** in_forward's deny_keepalive: HELO says keepalive false, and the connection is closed after the first message (after its ack). */
  denyKeepalive?: boolean;
  /** Largest accepted msgpack message (the whole forward message, as on the wire). Default 64 MiB. */
  maxMessageBytes?: number;
  /** A msgpack str that is not valid UTF-8 is a protocol error (binary must travel as bin). Default true. */
  strictUtf8?: boolean;
  /** Initial misbehaviour (also switchable at runtime through server.behaviour). */
  behaviour?: Partial<ForwardBehaviour>;
  /**
   * Benchmarks: take PackedForward chunks at their option.size without decoding the entries (events stay
   * empty; chunks are recorded and acked), so the server is not what limits the measured client.
   */
  countOnly?: boolean;
}

export interface ForwardBehaviour {
  withholdAck: boolean; // receive but never ack
  ackDelayMs: number;
  /** Close the socket after reading the first half of the next incoming data (the next chunk), before acking. One-shot: resets itself to false when it fires. */
  closeMidChunk: boolean;
  badPong: boolean; // PONG with a wrong digest
  refuse: string | undefined; // PONG auth_result false with this reason
  wrongAck: boolean; // answer with an ack for a different chunk id
}

export type ForwardMode = "Message" | "Forward" | "PackedForward" | "CompressedPackedForward";

export interface ReceivedEvent {
  tag: string;
  time: { sec: number; nsec: number } | number;
  record: Record<string, unknown>;
  chunk: string | undefined;
  mode: ForwardMode;
  connection: number;
}

export interface ReceivedChunk {
  id: string;
  count: number;
  connection: number;
  acked: boolean;
  tag: string;
  mode: ForwardMode;
}

export interface Handshake {
  ok: boolean;
  reason: string;
  connection: number;
  /** The client's self_hostname and username from its PING ("" when the PING was unreadable). */
  clientHostname: string;
  username: string;
}

export interface ForwardServer {
  readonly host: string;
  readonly port: number;
  behaviour: ForwardBehaviour;
  readonly events: ReceivedEvent[]; // in arrival order
  /** Every chunk received (duplicates kept: a resend of the same id appears twice). */
  readonly chunks: ReceivedChunk[];
  readonly connections: number; // accepted so far
  readonly handshakes: Handshake[];
  readonly protocolErrors: string[];
  /** How many times closeMidChunk fired. */
  readonly midChunkCloses: number;
  /** Connections open right now. */
  readonly openConnections: number;
  /** Resolves once pred() is true; re-checked on every change (event, chunk, connection, handshake, close, error). */
  waitFor(pred: () => boolean, timeoutMs?: number): Promise<void>;
  /** Closes the listener and all sockets. */
  stop(): Promise<void>;
  /** The server goes down: listener closed, every connection dropped. */
  down(): Promise<void>;
  /** The server comes back on the SAME port. */
  up(): Promise<void>;
}

/** EventTime: msgpack ext type 0, 8 bytes, uint32 BE seconds then uint32 BE nanoseconds. */
export class EventTime {
  constructor(
    readonly sec: number,
    readonly nsec: number,
  ) {}
}

export const forwardExtensionCodec = new ExtensionCodec();
forwardExtensionCodec.register({
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
    if (data.length !== 8) throw new ProtocolError(`EventTime (ext type 0) must have 8 bytes, got ${data.length}`);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    return new EventTime(view.getUint32(0), view.getUint32(4));
  },
});

function sha512Hex(...parts: (string | Uint8Array)[]): string {
  const hash = createHash("sha512");
  for (const part of parts) hash.update(part);
  return hash.digest("hex");
}

class ProtocolError extends Error {}

const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;
const MAX_DEPTH = 512;
const utf8Fatal = new TextDecoder("utf-8", { fatal: true });
const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------------------------------------
// msgpack framing

interface Header {
  /** Header bytes plus, for str/bin/ext and scalars, the payload. */
  size: number;
  /** For arrays and maps: the number of child values (a map has 2 per entry). */
  items?: number;
  /** For str: where its payload starts. */
  str?: number;
}

/** The header at pos, or undefined when its bytes have not all arrived. Throws on the never-used byte 0xc1. */
function readHeader(b: Uint8Array, pos: number, len: number): Header | undefined {
  const t = b[pos]!;
  const need = (n: number) => pos + n <= len;
  const u8 = () => b[pos + 1]!;
  const u16 = () => (b[pos + 1]! << 8) | b[pos + 2]!;
  const u32 = () => ((b[pos + 1]! << 24) >>> 0) + ((b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!);
  if (t <= 0x7f || t >= 0xe0) return { size: 1 };
  if (t <= 0x8f) return { size: 1, items: 2 * (t & 0x0f) };
  if (t <= 0x9f) return { size: 1, items: t & 0x0f };
  if (t <= 0xbf) return { size: 1 + (t & 0x1f), str: pos + 1 };
  switch (t) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      return { size: 1 };
    case 0xc1:
      throw new ProtocolError("not msgpack: byte 0xc1 (never used)");
    case 0xc4:
      return need(2) ? { size: 2 + u8() } : undefined;
    case 0xc5:
      return need(3) ? { size: 3 + u16() } : undefined;
    case 0xc6:
      return need(5) ? { size: 5 + u32() } : undefined;
    case 0xc7:
      return need(2) ? { size: 3 + u8() } : undefined;
    case 0xc8:
      return need(3) ? { size: 4 + u16() } : undefined;
    case 0xc9:
      return need(5) ? { size: 6 + u32() } : undefined;
    case 0xca:
      return { size: 5 };
    case 0xcb:
      return { size: 9 };
    case 0xcc:
    case 0xd0:
      return { size: 2 };
    case 0xcd:
    case 0xd1:
      return { size: 3 };
    case 0xce:
    case 0xd2:
      return { size: 5 };
    case 0xcf:
    case 0xd3:
      return { size: 9 };
    case 0xd4:
      return { size: 3 };
    case 0xd5:
      return { size: 4 };
    case 0xd6:
      return { size: 6 };
    case 0xd7:
      return { size: 10 };
    case 0xd8:
      return { size: 18 };
    case 0xd9:
      return need(2) ? { size: 2 + u8(), str: pos + 2 } : undefined;
    case 0xda:
      return need(3) ? { size: 3 + u16(), str: pos + 3 } : undefined;
    case 0xdb:
      return need(5) ? { size: 5 + u32(), str: pos + 5 } : undefined;
    case 0xdc:
      return need(3) ? { size: 3, items: u16() } : undefined;
    case 0xdd:
      return need(5) ? { size: 5, items: u32() } : undefined;
    case 0xde:
      return need(3) ? { size: 3, items: 2 * u16() } : undefined;
    default: // 0xdf
      return need(5) ? { size: 5, items: 2 * u32() } : undefined;
  }
}

/**
 * Splits a byte stream into whole msgpack values, however the stream is cut into pieces. Resumable: the scan
 * continues where the previous push stopped (linear in the bytes, whatever the split). A value larger than
 * maxMessageBytes is an error as soon as its size is known.
 */
export class MsgpackFramer {
  private buf = new Uint8Array(0);
  private len = 0;
  private start = 0; // where the value being framed starts
  private pos = 0; // the next header to read
  private readonly stack: number[] = []; // children still expected by each open array/map

  constructor(
    readonly maxMessageBytes = DEFAULT_MAX_MESSAGE,
    readonly maxDepth = MAX_DEPTH,
  ) {}

  /** Bytes held for a value not complete yet. */
  get pendingBytes(): number {
    return this.len - this.start;
  }

  /** Adds bytes; returns the values completed by them (each a copy). Throws ProtocolError on bad input. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.len + chunk.length > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.len + chunk.length, this.buf.length * 2, 64 * 1024));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
    const out: Uint8Array[] = [];
    while (this.advance()) {
      out.push(this.buf.slice(this.start, this.pos));
      this.start = this.pos;
    }
    if (this.start === this.len) {
      this.start = this.pos = this.len = 0;
      if (this.buf.length > 1024 * 1024) this.buf = new Uint8Array(0);
    } else if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.len);
      this.len -= this.start;
      this.pos -= this.start;
      this.start = 0;
    }
    return out;
  }

  /** Scans on; true when a whole top-level value ends at this.pos. */
  private advance(): boolean {
    while (this.pos < this.len) {
      const h = readHeader(this.buf, this.pos, this.len);
      if (h === undefined) return false;
      if (this.pos + h.size - this.start > this.maxMessageBytes) {
        throw new ProtocolError(`message larger than the limit of ${this.maxMessageBytes} bytes`);
      }
      if (h.items === undefined) {
        if (this.pos + h.size > this.len) return false;
        this.pos += h.size;
        if (this.valueDone()) return true;
      } else {
        this.pos += h.size;
        if (h.items === 0) {
          if (this.valueDone()) return true;
        } else {
          if (this.stack.length >= this.maxDepth) throw new ProtocolError(`nesting deeper than ${this.maxDepth}`);
          this.stack.push(h.items);
        }
      }
    }
    return false;
  }

  private valueDone(): boolean {
    while (this.stack.length > 0) {
      const top = this.stack.length - 1;
      const left = this.stack[top]! - 1;
      if (left > 0) {
        this.stack[top] = left;
        return false;
      }
      this.stack.pop();
    }
    return true;
  }
}

/** End of the complete value at pos in b[..end). Throws when it is truncated; with validateUtf8, when a str is not UTF-8. */
function skipValue(b: Uint8Array, pos: number, end: number, validateUtf8: boolean): number {
  let remaining = 1;
  const stack: number[] = [];
  for (;;) {
    if (pos >= end) throw new ProtocolError("truncated msgpack value");
    const h = readHeader(b, pos, end);
    if (h === undefined || pos + h.size > end) throw new ProtocolError("truncated msgpack value");
    if (validateUtf8 && h.str !== undefined) {
      try {
        utf8Fatal.decode(b.subarray(h.str, pos + h.size));
      } catch {
        throw new ProtocolError("a msgpack str is not valid UTF-8 (binary data must be sent as bin)");
      }
    }
    pos += h.size;
    remaining--;
    if (h.items !== undefined && h.items > 0) {
      if (stack.length >= MAX_DEPTH) throw new ProtocolError(`nesting deeper than ${MAX_DEPTH}`);
      stack.push(remaining);
      remaining = h.items;
    }
    while (remaining === 0) {
      if (stack.length === 0) return pos;
      remaining = stack.pop()!;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the server

const decoder = new Decoder({ extensionCodec: forwardExtensionCodec });
const encoder = new Encoder({ extensionCodec: forwardExtensionCodec });

type Phase = "pingpong" | "established" | "closed";

interface Conn {
  id: number;
  socket: net.Socket;
  framer: MsgpackFramer;
  phase: Phase;
  nonce: Uint8Array;
  authSalt: Uint8Array;
}

/** A call, so that TypeScript does not narrow phase across the handlers that change it. */
function isClosed(c: Conn): boolean {
  return c.phase === "closed";
}

function isPlainMap(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof EventTime) && !(v instanceof Date);
}

function describe(v: unknown): string {
  const text = JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? `<${x.length} bytes>` : x));
  return (text === undefined ? String(v) : text).slice(0, 120);
}

function checkTime(t: unknown): { sec: number; nsec: number } | number {
  if (t instanceof EventTime) {
    if (t.nsec >= 1_000_000_000) throw new ProtocolError(`EventTime nanoseconds out of range: ${t.nsec}`);
    return { sec: t.sec, nsec: t.nsec };
  }
  if (typeof t === "number" && Number.isInteger(t) && t >= 0) return t;
  throw new ProtocolError(`time must be EventTime (ext type 0) or a non-negative integer, got ${describe(t)}`);
}

function checkRecord(r: unknown): Record<string, unknown> {
  if (!isPlainMap(r)) throw new ProtocolError(`record must be a map, got ${describe(r)}`);
  return r;
}

function strBytes(v: string | Uint8Array): Uint8Array {
  return typeof v === "string" ? utf8.encode(v) : v;
}

/** ["HELO", {"nonce": str, "auth": str}] with the raw bytes inside msgpack str, as Fluent Bit writes it. */
function fluentBitHelo(nonce: Uint8Array, auth: Uint8Array): Uint8Array {
  const parts: number[] = [0x92, 0xa4, ...utf8.encode("HELO"), 0x82];
  parts.push(0xa5, ...utf8.encode("nonce"), 0xa0 | nonce.length, ...nonce);
  parts.push(0xa4, ...utf8.encode("auth"), 0xa0 | auth.length, ...auth);
  return Uint8Array.from(parts);
}

export async function startForwardServer(opts: ForwardServerOptions = {}): Promise<ForwardServer> {
  if (opts.users && Object.keys(opts.users).length > 0 && opts.sharedKey === undefined) {
    throw new Error("users (user auth) need a sharedKey, as in in_forward's <security>");
  }
  const host = "127.0.0.1";
  const hostname = opts.hostname ?? "forward-test";
  const flavour = opts.flavour ?? "fluentd";
  const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE;
  const strictUtf8 = opts.strictUtf8 ?? true;
  const userAuth = opts.users !== undefined && Object.keys(opts.users).length > 0;

  const behaviour: ForwardBehaviour = {
    withholdAck: false,
    ackDelayMs: 0,
    closeMidChunk: false,
    badPong: false,
    refuse: undefined,
    wrongAck: false,
    ...opts.behaviour,
  };
  const events: ReceivedEvent[] = [];
  const chunks: ReceivedChunk[] = [];
  const handshakes: Handshake[] = [];
  const protocolErrors: string[] = [];
  const conns = new Set<Conn>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let connections = 0;
  let midChunkCloses = 0;
  let port = opts.port ?? 0;
  let listener: net.Server | undefined;
  let stopped = false;

  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const fail = (c: Conn, message: string) => {
    protocolErrors.push(`connection ${c.id}: ${message}`);
    c.phase = "closed";
    c.socket.destroy();
    notify();
  };

  const write = (c: Conn, bytes: Uint8Array) => {
    if (!c.socket.destroyed) c.socket.write(bytes);
  };

  const onAccept = (socket: net.Socket) => {
    if (stopped) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const c: Conn = {
      id: ++connections,
      socket,
      framer: new MsgpackFramer(maxMessageBytes),
      phase: opts.sharedKey === undefined ? "established" : "pingpong",
      nonce: new Uint8Array(randomBytes(16)),
      authSalt: new Uint8Array(randomBytes(16)),
    };
    conns.add(c);
    socket.on("error", () => {}); // resets by the peer are the peer's business; "close" follows
    socket.on("close", () => {
      c.phase = "closed";
      conns.delete(c);
      notify();
    });
    socket.on("data", (data: Buffer) => onData(c, data));
    if (c.phase === "pingpong") {
      // in_forward sends HELO right after accepting (after the TLS handshake), before reading anything.
      write(
        c,
        flavour === "fluent-bit"
          ? fluentBitHelo(c.nonce, c.authSalt)
          : encoder.encode(["HELO", { nonce: c.nonce, auth: c.authSalt, keepalive: !opts.denyKeepalive }]),
      );
    }
    notify();
  };

  const onData = (c: Conn, data: Uint8Array) => {
    if (c.phase === "closed") return;
    let input = data;
    let killAfter = false;
    if (c.phase === "established" && behaviour.closeMidChunk) {
      behaviour.closeMidChunk = false;
      midChunkCloses++;
      input = data.subarray(0, Math.floor(data.length / 2));
      killAfter = true;
    }
    let messages: Uint8Array[];
    try {
      messages = c.framer.push(input);
    } catch (e) {
      fail(c, (e as Error).message);
      return;
    }
    for (const m of messages) {
      if (isClosed(c)) break;
      try {
        if (c.phase === "pingpong") onPing(c, m);
        else onMessage(c, m);
      } catch (e) {
        if (e instanceof ProtocolError) fail(c, e.message);
        else fail(c, `undecodable message: ${(e as Error).message}`);
      }
    }
    if (killAfter) {
      c.phase = "closed";
      c.socket.destroy();
    }
    notify();
  };

  const refusePing = (c: Conn, reason: string, clientHostname: string, username: string, withPong: boolean) => {
    handshakes.push({ ok: false, reason, connection: c.id, clientHostname, username });
    c.phase = "closed";
    if (withPong) {
      // in_forward: conn.on(:write_complete) { close_after_write_complete }; send PONG false.
      c.socket.end(encoder.encode(["PONG", false, reason, "", ""]));
    } else {
      c.socket.destroy();
    }
  };

  const onPing = (c: Conn, bytes: Uint8Array) => {
    const sharedKey = opts.sharedKey!;
    let msg: unknown;
    try {
      msg = decoder.decode(bytes);
    } catch {
      msg = undefined;
    }
    const ping = Array.isArray(msg) && msg.length === 6 && msg[0] === "PING" ? msg : undefined;
    const fields = ping?.slice(1) as unknown[] | undefined;
    const allStr = fields?.every((f) => typeof f === "string") ?? false;
    const wellTyped = fields !== undefined && fields.every((f) => typeof f === "string" || f instanceof Uint8Array);
    if (ping === undefined || !wellTyped || (flavour === "fluent-bit" && !allStr)) {
      refusePing(c, "invalid ping message", "", "", flavour === "fluentd");
      return;
    }
    const [, clientHost, salt, digest, username, passwordDigest] = ping as [string, string | Uint8Array, string | Uint8Array, string | Uint8Array, string | Uint8Array, string | Uint8Array];
    const clientHostname = typeof clientHost === "string" ? clientHost : Buffer.from(clientHost).toString();
    const user = typeof username === "string" ? username : Buffer.from(username).toString();
    const saltBytes = strBytes(salt);
    if (behaviour.refuse !== undefined) {
      refusePing(c, behaviour.refuse, clientHostname, user, true);
      return;
    }
    const expected = sha512Hex(saltBytes, strBytes(clientHost), c.nonce, sharedKey);
    if ((typeof digest === "string" ? digest : Buffer.from(digest).toString()) !== expected) {
      refusePing(c, "shared_key mismatch", clientHostname, user, flavour === "fluentd");
      return;
    }
    if (userAuth) {
      const password = Object.hasOwn(opts.users!, user) ? opts.users![user] : undefined;
      const got = typeof passwordDigest === "string" ? passwordDigest : Buffer.from(passwordDigest).toString();
      if (password === undefined || got !== sha512Hex(c.authSalt, strBytes(username), password)) {
        refusePing(c, "username/password mismatch", clientHostname, user, true);
        return;
      }
    }
    const pongDigest = behaviour.badPong
      ? sha512Hex(saltBytes, hostname, c.nonce, `${sharedKey}-but-not-quite`)
      : sha512Hex(saltBytes, hostname, c.nonce, sharedKey);
    write(c, encoder.encode(["PONG", true, "", hostname, pongDigest]));
    handshakes.push({ ok: true, reason: "", connection: c.id, clientHostname, username: user });
    c.phase = "established";
  };

  const decodeAt = (b: Uint8Array, start: number, end: number, validate: boolean): unknown => {
    if (validate && strictUtf8) skipValue(b, start, end, true);
    return decoder.decode(b.subarray(start, end));
  };

  const onMessage = (c: Conn, m: Uint8Array) => {
    const top = readHeader(m, 0, m.length)!;
    if (m[0] === 0xc0) return; // nil: TCP heartbeat, ignored as in_forward does
    const isMap = (m[0]! >= 0x80 && m[0]! <= 0x8f) || m[0] === 0xde || m[0] === 0xdf;
    if (top.items === undefined || isMap) {
      throw new ProtocolError(`a forward message must be an array, got ${describe(decoder.decode(m))}`);
    }
    const ranges: [number, number][] = [];
    let pos = top.size;
    for (let i = 0; i < top.items; i++) {
      const end = skipValue(m, pos, m.length, false);
      ranges.push([pos, end]);
      pos = end;
    }
    if (ranges.length < 2) throw new ProtocolError(`a forward message needs at least 2 elements, got ${ranges.length}`);
    const [tagStart, tagEnd] = ranges[0]!;
    const tag = decodeAt(m, tagStart, tagEnd, true);
    if (typeof tag !== "string") throw new ProtocolError(`tag must be a str, got ${describe(tag)}`);

    const [s1, e1] = ranges[1]!;
    const second = readHeader(m, s1, e1)!;
    const t1 = m[s1]!;
    const isStr = second.str !== undefined;
    const isBin = t1 === 0xc4 || t1 === 0xc5 || t1 === 0xc6;
    const isArray = (t1 >= 0x90 && t1 <= 0x9f) || t1 === 0xdc || t1 === 0xdd;
    let mode: ForwardMode;
    let optionIndex: number;
    if (isStr || isBin) {
      mode = "PackedForward";
      optionIndex = 2;
    } else if (isArray) {
      mode = "Forward";
      optionIndex = 2;
    } else {
      mode = "Message";
      optionIndex = 3;
    }
    const maxElements = optionIndex + 1;
    if (ranges.length > maxElements || (mode === "Message" && ranges.length < 3)) {
      throw new ProtocolError(`${mode} mode message with ${ranges.length} elements`);
    }

    let option: Record<string, unknown> | undefined;
    const optRange = ranges[optionIndex];
    if (optRange !== undefined) {
      const o = decodeAt(m, optRange[0], optRange[1], true);
      // Fluent Bit tolerates nil (old Docker sends it); so do we.
      if (o !== null && o !== undefined) {
        if (!isPlainMap(o)) throw new ProtocolError(`option must be a map, got ${describe(o)}`);
        option = o;
      }
    }
    const chunk = option?.chunk;
    if (chunk !== undefined && typeof chunk !== "string") throw new ProtocolError(`option chunk must be a str, got ${describe(chunk)}`);
    const compressed = option?.compressed;
    if (compressed !== undefined) {
      if (mode !== "PackedForward") throw new ProtocolError(`option compressed in ${mode} mode`);
      if (compressed !== "gzip" && compressed !== "text") throw new ProtocolError(`unknown option compressed: ${describe(compressed)}`);
    }
    if (compressed === "gzip") mode = "CompressedPackedForward";

    if (opts.countOnly && (mode === "PackedForward" || mode === "CompressedPackedForward") && typeof option?.size === "number" && chunk !== undefined) {
      const counted: ReceivedChunk = { id: chunk, count: option.size, connection: c.id, acked: false, tag, mode };
      chunks.push(counted);
      respond(c, counted);
      return;
    }
    const entries: [{ sec: number; nsec: number } | number, Record<string, unknown>][] = [];
    if (mode === "Message") {
      const [s2, e2] = ranges[2]!;
      entries.push([checkTime(decodeAt(m, s1, e1, true)), checkRecord(decodeAt(m, s2, e2, true))]);
    } else if (mode === "Forward") {
      const list = decodeAt(m, s1, e1, true) as unknown[];
      for (const e of list) entries.push(checkEntry(e));
    } else {
      const payloadStart = second.str ?? s1 + (t1 === 0xc4 ? 2 : t1 === 0xc5 ? 3 : 5);
      let stream = m.subarray(payloadStart, e1);
      if (mode === "CompressedPackedForward") {
        try {
          // node:zlib decompresses every concatenated gzip member (Bun.gunzipSync stops after the first).
          stream = new Uint8Array(gunzipSync(stream));
        } catch (e) {
          throw new ProtocolError(`entries do not gunzip: ${(e as Error).message}`);
        }
      }
      let p = 0;
      while (p < stream.length) {
        const end = skipValue(stream, p, stream.length, strictUtf8);
        entries.push(checkEntry(decoder.decode(stream.subarray(p, end))));
        p = end;
      }
    }
    const size = option?.size;
    if (size !== undefined && size !== entries.length) {
      throw new ProtocolError(`option size is ${describe(size)} but the message has ${entries.length} entries`);
    }

    for (const [time, record] of entries) {
      events.push({ tag, time, record, chunk, mode, connection: c.id });
    }
    if (chunk !== undefined) {
      const received: ReceivedChunk = { id: chunk, count: entries.length, connection: c.id, acked: false, tag, mode };
      chunks.push(received);
      respond(c, received);
    } else if (opts.denyKeepalive) {
      c.phase = "closed";
      c.socket.end();
    }
  };

  const checkEntry = (e: unknown): [{ sec: number; nsec: number } | number, Record<string, unknown>] => {
    if (!Array.isArray(e) || e.length !== 2) throw new ProtocolError(`an entry must be [time, record], got ${describe(e)}`);
    return [checkTime(e[0]), checkRecord(e[1])];
  };

  const respond = (c: Conn, received: ReceivedChunk) => {
    if (behaviour.withholdAck) return;
    const wrong = behaviour.wrongAck;
    const send = () => {
      if (c.socket.destroyed || c.socket.writableEnded) return;
      const id = wrong ? Buffer.from(randomBytes(16)).toString("base64") : received.id;
      const bytes = encoder.encode({ ack: id });
      if (opts.denyKeepalive) {
        c.phase = "closed";
        c.socket.end(bytes);
      } else {
        c.socket.write(bytes);
      }
      if (!wrong) received.acked = true;
      notify();
    };
    if (behaviour.ackDelayMs > 0) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, behaviour.ackDelayMs);
      timers.add(timer);
    } else {
      send();
    }
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const server = opts.tls
        ? tls.createServer({ cert: opts.tls.cert, key: opts.tls.key }, onAccept)
        : net.createServer(onAccept);
      server.on("tlsClientError", () => {}); // a client that rejects our certificate: its business
      const onError = (e: Error) => reject(e);
      server.once("error", onError);
      server.listen(port, host, () => {
        server.off("error", onError);
        server.on("error", () => {});
        const address = server.address();
        if (address !== null && typeof address === "object") port = address.port;
        listener = server;
        resolve();
      });
    });

  const closeAll = async () => {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const server = listener;
    listener = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const c of conns) {
      c.phase = "closed";
      c.socket.destroy();
    }
    conns.clear();
    await closed;
    notify();
  };

  await listen();

  const api: ForwardServer = {
    host,
    get port() {
      return port;
    },
    get behaviour() {
      return behaviour;
    },
    set behaviour(b: ForwardBehaviour) {
      Object.assign(behaviour, b);
    },
    events,
    chunks,
    handshakes,
    protocolErrors,
    get connections() {
      return connections;
    },
    get midChunkCloses() {
      return midChunkCloses;
    },
    get openConnections() {
      return conns.size;
    },
    waitFor(pred, timeoutMs = 5000) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          let ok: boolean;
          try {
            ok = pred();
          } catch (e) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(e);
            return;
          }
          if (ok) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `forward test server: condition not met within ${timeoutMs} ms: ${pred.toString()} ` +
                `(events ${events.length}, chunks ${chunks.length}, connections ${connections}, open ${conns.size}, ` +
                `handshakes ${describe(handshakes.map((h) => (h.ok ? "ok" : h.reason)))}, protocolErrors ${describe(protocolErrors)})`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop() {
      stopped = true;
      await closeAll();
    },
    async down() {
      await closeAll();
    },
    async up() {
      if (stopped) throw new Error("forward test server: up() after stop()");
      if (listener) return;
      await listen();
      notify();
    },
  };
  return api;
}

// ---------------------------------------------------------------------------------------------------------------
// certificates

const exec = promisify(execFile);

/**
 * A self-signed CA and a server certificate for 127.0.0.1/localhost, made with openssl into a new directory
 * under `parent` (pass the test's temp dir, which it removes; the default, the system's, keeps it): paths and PEM texts.
 */
export async function makeTestCertificates(parent = tmpdir()): Promise<{ dir: string; caPath: string; certPath: string; keyPath: string; ca: string; cert: string; key: string }> {
  const dir = await mkdtemp(join(parent, "nagare-forward-tls-"));
  const p = (name: string) => join(dir, name);
  await writeFile(
    p("ca.cnf"),
    [
      "[req]",
      "distinguished_name = dn",
      "prompt = no",
      "x509_extensions = v3_ca",
      "[dn]",
      "CN = nagare forward test CA",
      "[v3_ca]",
      "basicConstraints = critical, CA:TRUE",
      "keyUsage = critical, keyCertSign, cRLSign",
      "subjectKeyIdentifier = hash",
      "authorityKeyIdentifier = keyid:always",
      "",
    ].join("\n"),
  );
  await writeFile(
    p("server.ext"),
    [
      "basicConstraints = CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth",
      "subjectAltName = DNS:localhost, IP:127.0.0.1",
      "subjectKeyIdentifier = hash",
      "authorityKeyIdentifier = keyid, issuer",
      "",
    ].join("\n"),
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await exec("openssl", ["req", "-x509", ...ec, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "3650", "-config", p("ca.cnf")]);
  await exec("openssl", ["req", ...ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost"]);
  await exec("openssl", [
    "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial",
    "-out", p("server.crt"), "-days", "3650", "-extfile", p("server.ext"),
  ]);
  const [ca, cert, key] = await Promise.all([readFile(p("ca.crt"), "utf8"), readFile(p("server.crt"), "utf8"), readFile(p("server.key"), "utf8")]);
  return { dir, caPath: p("ca.crt"), certPath: p("server.crt"), keyPath: p("server.key"), ca, cert, key };
}

// ---------------------------------------------------------------------------------------------------------------
// a TLS witness

export interface TlsWitness {
  readonly port: number;
  /** Everything `openssl s_server -msg` printed so far: each TLS record received (<<<) and sent (>>>). */
  output(): string;
  /** Resolves once pred(output) is true; rejects after timeoutMs or when s_server exits first. */
  waitFor(pred: (output: string) => boolean, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `openssl s_server -msg` on 127.0.0.1, one connection: it prints every TLS record it receives, alerts
 * included, so a test can see whether a client ended with close_notify or just closed the socket (s_server then
 * reports an unexpected EOF). Bun's own node:tls server cannot tell the two apart (both are a clean 'end').
 */
export async function startTlsWitness(certs: { certPath: string; keyPath: string }): Promise<TlsWitness> {
  const proc = spawn("openssl", ["s_server", "-accept", "127.0.0.1:0", "-cert", certs.certPath, "-key", certs.keyPath, "-msg", "-naccept", "1"], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let exited = false;
  const changed = new Set<() => void>();
  const notify = () => {
    for (const f of [...changed]) f();
  };
  proc.stdout.on("data", (d: Buffer) => {
    out += d.toString("latin1");
    notify();
  });
  proc.stderr.on("data", (d: Buffer) => {
    out += d.toString("latin1");
    notify();
  });
  const gone = new Promise<void>((resolve) =>
    proc.once("exit", () => {
      exited = true;
      notify();
      resolve();
    }),
  );
  const waitFor = (pred: (output: string) => boolean, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pred(out)) done(resolve);
        else if (exited) done(() => reject(new Error(`openssl s_server exited before the condition was met: ${pred.toString()}\n${out.slice(-2000)}`)));
      };
      const done = (f: () => void) => {
        changed.delete(check);
        clearTimeout(timer);
        f();
      };
      const timer = setTimeout(() => done(() => reject(new Error(`openssl s_server: condition not met within ${timeoutMs} ms: ${pred.toString()}\n${out.slice(-2000)}`))), timeoutMs);
      changed.add(check);
      check();
    });
  await waitFor((o) => /^ACCEPT .*:\d+$/m.test(o));
  const port = Number(/^ACCEPT .*:(\d+)$/m.exec(out)![1]);
  return {
    port,
    output: () => out,
    waitFor,
    async stop() {
      if (!exited) proc.kill("SIGKILL");
      await gone;
    },
  };
}
