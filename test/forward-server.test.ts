/**
 * Proves the Forward Protocol v1 test server (test/support/forward-server.ts) with a tiny hand-written client:
 * raw msgpack over a TCP/TLS socket, digests computed here independently.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { rm } from "node:fs/promises";
import net from "node:net";
import tls from "node:tls";
import { gzipSync } from "node:zlib";
import { Decoder, Encoder } from "@msgpack/msgpack";
import {
  EventTime,
  MsgpackFramer,
  forwardExtensionCodec,
  makeTestCertificates,
  startForwardServer,
  type ForwardServer,
  type ForwardServerOptions,
} from "./support/forward-server.ts";

const encoder = new Encoder({ extensionCodec: forwardExtensionCodec });
const decoder = new Decoder({ extensionCodec: forwardExtensionCodec });
const enc = (v: unknown) => encoder.encode(v).slice();

function sha512hex(...parts: (string | Uint8Array)[]): string {
  const h = createHash("sha512");
  for (const p of parts) h.update(p);
  return h.digest("hex");
}

/** A client that speaks raw msgpack: frames what the server writes, never sleeps. */
class RawClient {
  private readonly framer = new MsgpackFramer();
  private readonly inbox: Uint8Array[] = [];
  private wake: (() => void) | undefined;
  isClosed = false;
  error: Error | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => {
      this.inbox.push(...this.framer.push(d));
      this.wake?.();
    });
    socket.on("error", (e) => {
      this.error = e;
    });
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.isClosed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static connect(port: number, tlsOptions?: tls.ConnectionOptions): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = tlsOptions
        ? tls.connect({ host: "127.0.0.1", port, ...tlsOptions }, () => done())
        : net.connect({ host: "127.0.0.1", port }, () => done());
      const done = () => {
        socket.off("error", reject);
        const client = new RawClient(socket);
        clients.add(client);
        resolve(client);
      };
      socket.once("error", reject);
    });
  }

  send(value: unknown): void {
    this.socket.write(enc(value));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next whole msgpack value from the server, as bytes. Rejects when the connection closes first. */
  async nextRaw(timeoutMs = 3000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.inbox.shift();
      if (m) return m;
      if (this.isClosed) throw new Error("connection closed");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no message from the server in time");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  async next(timeoutMs?: number): Promise<unknown> {
    return decoder.decode(await this.nextRaw(timeoutMs));
  }

  close(): void {
    this.socket.destroy();
  }
}

const clients = new Set<RawClient>();
const servers = new Set<ForwardServer>();
const tempDirs: string[] = [];

async function server(opts?: ForwardServerOptions): Promise<ForwardServer> {
  const s = await startForwardServer(opts);
  servers.add(s);
  return s;
}

afterEach(async () => {
  for (const c of clients) c.close();
  await Promise.all([...clients].map((c) => c.closed));
  clients.clear();
  await Promise.all([...servers].map((s) => s.stop()));
  servers.clear();
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const t0 = new EventTime(1_700_000_000, 123_456_789);

/** Concatenated [time, record] entries (the PackedForward payload). */
function packEntries(entries: [unknown, Record<string, unknown>][]): Uint8Array {
  return Buffer.concat(entries.map((e) => enc(e)));
}

/** Client side of the handshake: reads HELO, sends PING, returns the HELO and the PONG. */
async function handshake(
  c: RawClient,
  creds: { sharedKey: string; hostname?: string; username?: string; password?: string },
): Promise<{ nonce: Uint8Array; auth: Uint8Array; keepalive: unknown; pong: unknown[]; salt: string }> {
  const helo = (await c.next()) as [string, Record<string, unknown>];
  expect(helo[0]).toBe("HELO");
  const { nonce, auth, keepalive } = helo[1] as { nonce: Uint8Array; auth: Uint8Array; keepalive: unknown };
  const salt = "0123456789abcdef0123456789abcdef"; // out_forward: SecureRandom.hex(16)
  const host = creds.hostname ?? "client-host";
  const username = creds.username ?? "";
  const password = creds.password ?? "";
  c.send(["PING", host, salt, sha512hex(salt, host, nonce, creds.sharedKey), username, username === "" ? "" : sha512hex(auth, username, password)]);
  const pong = (await c.next()) as unknown[];
  return { nonce, auth, keepalive, pong, salt };
}

describe("framing", () => {
  test("any split of the stream gives the same messages; a message over the limit is an error", () => {
    const messages = [enc(["a", t0, { k: "v" }]), enc({ ack: "x" }), enc(null), enc(["b", "x".repeat(70_000), { chunk: "c" }])];
    const stream = Buffer.concat(messages);
    for (const piece of [1, 2, 3, 7, 64, 65_536, stream.length]) {
      const f = new MsgpackFramer();
      const out: Uint8Array[] = [];
      for (let i = 0; i < stream.length; i += piece) out.push(...f.push(stream.subarray(i, i + piece)));
      expect(out.map((m) => Buffer.from(m).toString("hex"))).toEqual(messages.map((m) => Buffer.from(m).toString("hex")));
      expect(f.pendingBytes).toBe(0);
    }
    const small = new MsgpackFramer(1000);
    expect(() => small.push(enc(["t", new Uint8Array(2000)]).subarray(0, 10))).toThrow(/larger than the limit/);
    expect(() => new MsgpackFramer().push(Uint8Array.of(0xc1))).toThrow(/0xc1/);
  });
});

describe("carrier modes", () => {
  test("Message mode: EventTime and integer time, chunk acked, no option no answer", async () => {
    const s = await server();
    const c = await RawClient.connect(s.port);
    c.send(["app.a", t0, { msg: "one" }]); // no option: no answer
    c.send(["app.a", 1_700_000_001, { msg: "two" }, { chunk: "c1" }]);
    expect(await c.next()).toEqual({ ack: "c1" }); // the first answer is c1's: nothing came for the first message
    expect(s.events).toEqual([
      { tag: "app.a", time: { sec: 1_700_000_000, nsec: 123_456_789 }, record: { msg: "one" }, chunk: undefined, mode: "Message", connection: 1 },
      { tag: "app.a", time: 1_700_000_001, record: { msg: "two" }, chunk: "c1", mode: "Message", connection: 1 },
    ]);
    expect(s.chunks).toEqual([{ id: "c1", count: 1, connection: 1, acked: true, tag: "app.a", mode: "Message" }]);
    expect(s.connections).toBe(1);
  });

  test("Forward mode: entries with both time kinds, size option checked", async () => {
    const s = await server();
    const c = await RawClient.connect(s.port);
    c.send(["app.f", [[t0, { n: 1 }], [5, { n: 2, bin: Uint8Array.of(0, 255) }]], { size: 2, chunk: "f1" }]);
    expect(await c.next()).toEqual({ ack: "f1" });
    expect(s.events.map((e) => [e.time, e.record, e.mode])).toEqual([
      [{ sec: 1_700_000_000, nsec: 123_456_789 }, { n: 1 }, "Forward"],
      [5, { n: 2, bin: Uint8Array.of(0, 255) }, "Forward"],
    ]);
  });

  test("PackedForward as bin and as str", async () => {
    const s = await server();
    const c = await RawClient.connect(s.port);
    const entries = packEntries([
      [t0, { n: 1 }],
      [7, { n: 2 }],
    ]);
    c.send(["app.p", entries, { size: 2, chunk: "p1" }]); // Uint8Array: bin
    expect(await c.next()).toEqual({ ack: "p1" });
    // str form: the same bytes under a str header (str8: 0xd9 len)
    const strForm = Buffer.concat([Uint8Array.of(0x93), enc("app.p"), Uint8Array.of(0xd9, entries.length), entries, enc({ chunk: "p2" })]);
    c.write(strForm);
    expect(await c.next()).toEqual({ ack: "p2" });
    expect(s.events.map((e) => [e.record, e.mode, e.chunk])).toEqual([
      [{ n: 1 }, "PackedForward", "p1"],
      [{ n: 2 }, "PackedForward", "p1"],
      [{ n: 1 }, "PackedForward", "p2"],
      [{ n: 2 }, "PackedForward", "p2"],
    ]);
    expect(s.protocolErrors).toEqual([]);
  });

  test("CompressedPackedForward with two concatenated gzip members", async () => {
    const s = await server();
    const c = await RawClient.connect(s.port);
    const gz = Buffer.concat([gzipSync(packEntries([[t0, { part: 1 }]])), gzipSync(packEntries([[t0, { part: 2 }], [9, { part: 3 }]]))]);
    c.send(["app.z", gz, { size: 3, chunk: "z1", compressed: "gzip" }]);
    expect(await c.next()).toEqual({ ack: "z1" });
    expect(s.events.map((e) => [e.record, e.mode])).toEqual([
      [{ part: 1 }, "CompressedPackedForward"],
      [{ part: 2 }, "CompressedPackedForward"],
      [{ part: 3 }, "CompressedPackedForward"],
    ]);
    expect(s.chunks[0]).toMatchObject({ id: "z1", count: 3, mode: "CompressedPackedForward", acked: true });
  });

  test("messages written a byte at a time, several chunks pipelined, a resent id kept twice", async () => {
    const s = await server();
    const c = await RawClient.connect(s.port);
    const bytes = Buffer.concat([
      enc(["app.s", packEntries([[t0, { i: 1 }]]), { chunk: "s1" }]),
      enc(null), // TCP heartbeat: ignored
      enc(["app.s", [[t0, { i: 2 }]], { chunk: "s2" }]),
      enc(["app.s", [[t0, { i: 2 }]], { chunk: "s2" }]),
    ]);
    for (const b of bytes) c.write(Uint8Array.of(b));
    expect([await c.next(), await c.next(), await c.next()]).toEqual([{ ack: "s1" }, { ack: "s2" }, { ack: "s2" }]);
    expect(s.chunks.map((k) => [k.id, k.acked])).toEqual([
      ["s1", true],
      ["s2", true],
      ["s2", true],
    ]);
    expect(s.events).toHaveLength(3);
  });
});

describe("misbehaviour", () => {
  test("withholdAck: received, never acked", async () => {
    const s = await server({ behaviour: { withholdAck: true } });
    const c = await RawClient.connect(s.port);
    c.send(["app", [[t0, { i: 1 }]], { chunk: "w1" }]);
    await s.waitFor(() => s.chunks.length === 1);
    s.behaviour.withholdAck = false;
    c.send(["app", [[t0, { i: 2 }]], { chunk: "w2" }]);
    expect(await c.next()).toEqual({ ack: "w2" }); // w1's ack would have come first on this connection
    expect(s.chunks.map((k) => [k.id, k.acked])).toEqual([
      ["w1", false],
      ["w2", true],
    ]);
    expect(s.events).toHaveLength(2);
  });

  test("ackDelayMs delays the ack", async () => {
    const s = await server();
    s.behaviour.ackDelayMs = 300;
    const c = await RawClient.connect(s.port);
    const sent = performance.now();
    c.send(["app", [[t0, {}]], { chunk: "d1" }]);
    await s.waitFor(() => s.chunks.length === 1);
    expect(s.chunks[0]!.acked).toBe(false);
    expect(await c.next()).toEqual({ ack: "d1" });
    expect(performance.now() - sent).toBeGreaterThanOrEqual(290);
    expect(s.chunks[0]!.acked).toBe(true);
  });

  test("wrongAck answers with another chunk id", async () => {
    const s = await server();
    s.behaviour.wrongAck = true;
    const c = await RawClient.connect(s.port);
    c.send(["app", [[t0, {}]], { chunk: "r1" }]);
    const ack = (await c.next()) as { ack: string };
    expect(typeof ack.ack).toBe("string");
    expect(ack.ack).not.toBe("r1");
    expect(s.chunks[0]!.acked).toBe(false);
  });

  test("closeMidChunk closes after half of the next chunk, without an ack; one-shot", async () => {
    const s = await server();
    const c = await RawClient.connect(s.port);
    c.send(["app", [[t0, { i: 0 }]], { chunk: "m0" }]);
    expect(await c.next()).toEqual({ ack: "m0" });
    s.behaviour.closeMidChunk = true;
    c.send(["app", [[t0, { i: 1, pad: "x".repeat(1000) }]], { chunk: "m1" }]);
    await c.closed;
    await expect(c.next()).rejects.toThrow(/closed/);
    expect(s.midChunkCloses).toBe(1);
    expect(s.behaviour.closeMidChunk).toBe(false);
    expect(s.chunks.map((k) => k.id)).toEqual(["m0"]);
    // the client reconnects and resends: delivered
    const c2 = await RawClient.connect(s.port);
    c2.send(["app", [[t0, { i: 1 }]], { chunk: "m1" }]);
    expect(await c2.next()).toEqual({ ack: "m1" });
    expect(s.chunks.map((k) => [k.id, k.connection])).toEqual([
      ["m0", 1],
      ["m1", 2],
    ]);
  });

  test("malformed input is recorded and closes the connection", async () => {
    const s = await server({ maxMessageBytes: 4096 });
    const cases: [Uint8Array, RegExp][] = [
      [Uint8Array.of(0xc1), /0xc1/],
      [enc({ not: "an array" }), /must be an array/],
      [enc([42, t0, {}]), /tag must be a str/],
      [enc(["app", t0, "not a map"]), /record must be a map/],
      [enc(["app", 1.5, {}]), /time must be EventTime/],
      [enc(["app", [[t0, {}]], { size: 2, chunk: "x" }]), /option size is 2 but the message has 1 entries/],
      [enc(["app", [[t0, {}]], { chunk: 17 }]), /chunk must be a str/],
      [enc(["app", Uint8Array.of(1, 2, 3), { compressed: "gzip" }]), /do not gunzip/],
      [enc(["app", [[t0, {}, "extra"]]]), /an entry must be \[time, record\]/],
      [enc(["app", t0, { big: "y".repeat(5000) }]), /larger than the limit of 4096/],
      // a str holding bytes that are not UTF-8: a0|3 ff fe fd
      [Buffer.concat([Uint8Array.of(0x93), enc("app"), enc(t0), Uint8Array.of(0x81, 0xa1, 0x6b, 0xa3, 0xff, 0xfe, 0xfd)]), /not valid UTF-8/],
    ];
    for (const [bytes, expected] of cases) {
      const c = await RawClient.connect(s.port);
      c.write(bytes);
      await c.closed;
      expect(s.protocolErrors.at(-1)).toMatch(expected);
    }
    expect(s.protocolErrors).toHaveLength(cases.length);
    expect(s.events).toEqual([]);
  });
});

describe("handshake", () => {
  test("shared key and user/password: HELO as Fluentd sends it, PONG digest verified, then events", async () => {
    const s = await server({ sharedKey: "s3cret", users: { alice: "wonder" }, hostname: "aggregator-1" });
    const c = await RawClient.connect(s.port);
    const { nonce, auth, keepalive, pong, salt } = await handshake(c, { sharedKey: "s3cret", username: "alice", password: "wonder" });
    expect(nonce).toBeInstanceOf(Uint8Array); // msgpack bin, 16 random bytes
    expect(nonce.length).toBe(16);
    expect(auth).toBeInstanceOf(Uint8Array);
    expect(auth.length).toBe(16);
    expect(keepalive).toBe(true);
    expect(pong).toEqual(["PONG", true, "", "aggregator-1", sha512hex(salt, "aggregator-1", nonce, "s3cret")]);
    c.send(["app", [[t0, { ok: 1 }]], { chunk: "h1" }]);
    expect(await c.next()).toEqual({ ack: "h1" });
    expect(s.handshakes).toEqual([{ ok: true, reason: "", connection: 1, clientHostname: "client-host", username: "alice" }]);
  });

  test("without user auth the HELO still carries an auth salt (as in_forward does); a fresh nonce per connection", async () => {
    const s = await server({ sharedKey: "k" });
    const c = await RawClient.connect(s.port);
    const first = await handshake(c, { sharedKey: "k" });
    expect(first.auth.length).toBe(16);
    expect(first.pong[1]).toBe(true);
    const c2 = await RawClient.connect(s.port);
    const second = await handshake(c2, { sharedKey: "k" });
    expect(second.pong[1]).toBe(true);
    expect(Buffer.from(second.nonce).equals(Buffer.from(first.nonce))).toBe(false);
    expect(Buffer.from(second.auth).equals(Buffer.from(first.auth))).toBe(false);
  });

  test("wrong shared key: PONG false 'shared_key mismatch', then the server closes", async () => {
    const s = await server({ sharedKey: "right" });
    const c = await RawClient.connect(s.port);
    const { pong } = await handshake(c, { sharedKey: "wrong" });
    expect(pong).toEqual(["PONG", false, "shared_key mismatch", "", ""]);
    await c.closed;
    expect(s.handshakes).toMatchObject([{ ok: false, reason: "shared_key mismatch" }]);
  });

  test("wrong password or unknown user: 'username/password mismatch', closed", async () => {
    const s = await server({ sharedKey: "k", users: { alice: "wonder" } });
    for (const [username, password] of [
      ["alice", "nope"],
      ["bob", "wonder"],
      ["", ""],
    ] as const) {
      const c = await RawClient.connect(s.port);
      const { pong } = await handshake(c, { sharedKey: "k", username, password });
      expect(pong).toEqual(["PONG", false, "username/password mismatch", "", ""]);
      await c.closed;
    }
  });

  test("events before the PING: 'invalid ping message', closed, nothing taken in", async () => {
    const s = await server({ sharedKey: "k" });
    const c = await RawClient.connect(s.port);
    expect(((await c.next()) as unknown[])[0]).toBe("HELO");
    c.send(["app", [[t0, {}]], { chunk: "early" }]);
    expect(await c.next()).toEqual(["PONG", false, "invalid ping message", "", ""]);
    await c.closed;
    expect(s.events).toEqual([]);
  });

  test("refuse: PONG false with the given reason, closed", async () => {
    const s = await server({ sharedKey: "k", behaviour: { refuse: "maintenance" } });
    const c = await RawClient.connect(s.port);
    const { pong } = await handshake(c, { sharedKey: "k" });
    expect(pong).toEqual(["PONG", false, "maintenance", "", ""]);
    await c.closed;
    expect(s.handshakes).toMatchObject([{ ok: false, reason: "maintenance" }]);
  });

  test("badPong: auth_result true but a digest the client must reject", async () => {
    const s = await server({ sharedKey: "k", hostname: "agg" });
    s.behaviour.badPong = true;
    const c = await RawClient.connect(s.port);
    const { pong, nonce, salt } = await handshake(c, { sharedKey: "k" });
    expect(pong.slice(0, 4)).toEqual(["PONG", true, "", "agg"]);
    expect(pong[4]).toMatch(/^[0-9a-f]{128}$/);
    expect(pong[4]).not.toBe(sha512hex(salt, "agg", nonce, "k"));
    s.behaviour.badPong = false;
    const c2 = await RawClient.connect(s.port);
    const good = await handshake(c2, { sharedKey: "k" });
    expect(good.pong[4]).toBe(sha512hex(good.salt, "agg", good.nonce, "k"));
  });

  test("denyKeepalive: HELO keepalive false, the connection closes after the first ack", async () => {
    const s = await server({ sharedKey: "k", denyKeepalive: true });
    const c = await RawClient.connect(s.port);
    const { keepalive, pong } = await handshake(c, { sharedKey: "k" });
    expect(keepalive).toBe(false);
    expect(pong[1]).toBe(true);
    c.send(["app", [[t0, {}]], { chunk: "once" }]);
    expect(await c.next()).toEqual({ ack: "once" });
    await c.closed;
  });

  test("fluent-bit flavour: nonce and auth as raw bytes in msgpack str, no keepalive; key mismatch closes without PONG", async () => {
    const s = await server({ sharedKey: "k", flavour: "fluent-bit", hostname: "fb" });
    const c = await RawClient.connect(s.port);
    const raw = await c.nextRaw();
    // 92 a4 HELO 82 a5 nonce b0 <16> a4 auth b0 <16>
    expect(raw.length).toBe(1 + 5 + 1 + 6 + 17 + 5 + 17);
    expect(raw[13]).toBe(0xb0);
    const nonce = raw.subarray(14, 30);
    const helo = new Decoder({ rawStrings: true }).decode(raw) as [Uint8Array, Record<string, Uint8Array>];
    expect(Object.keys(helo[1])).toEqual(["nonce", "auth"]);
    expect(Buffer.from(helo[1].nonce!).equals(Buffer.from(nonce))).toBe(true);
    const salt = "abcdef0123456789abcdef0123456789";
    c.send(["PING", "client", salt, sha512hex(salt, "client", nonce, "k"), "", ""]);
    expect(await c.next()).toEqual(["PONG", true, "", "fb", sha512hex(salt, "fb", nonce, "k")]);

    const c2 = await RawClient.connect(s.port);
    const raw2 = await c2.nextRaw();
    c2.send(["PING", "client", salt, sha512hex(salt, "client", raw2.subarray(14, 30), "wrong"), "", ""]);
    await c2.closed;
    await expect(c2.next()).rejects.toThrow(/closed/);
    expect(s.handshakes.map((h) => h.reason)).toEqual(["", "shared_key mismatch"]);
  });

  test("users without a shared key is a configuration error", async () => {
    await expect(startForwardServer({ users: { a: "b" } })).rejects.toThrow(/sharedKey/);
  });
});

describe("transport", () => {
  test("TLS with the generated CA, with rejectUnauthorized false, and refused without the CA", async () => {
    const certs = await makeTestCertificates();
    tempDirs.push(certs.dir);
    const s = await server({ tls: { cert: certs.cert, key: certs.key }, sharedKey: "k" });
    const c = await RawClient.connect(s.port, { ca: certs.ca });
    expect((c.socket as tls.TLSSocket).authorized).toBe(true);
    const { pong } = await handshake(c, { sharedKey: "k" });
    expect(pong[1]).toBe(true);
    c.send(["app", [[t0, { tls: true }]], { chunk: "t1" }]);
    expect(await c.next()).toEqual({ ack: "t1" });

    const byName = await RawClient.connect(s.port, { ca: certs.ca, servername: "localhost" });
    expect(((await byName.next()) as unknown[])[0]).toBe("HELO");

    const loose = await RawClient.connect(s.port, { rejectUnauthorized: false });
    expect(((await loose.next()) as unknown[])[0]).toBe("HELO");

    await expect(RawClient.connect(s.port, {})).rejects.toThrow();
  });

  test("down() drops connections and refuses new ones; up() listens again on the same port", async () => {
    const s = await server();
    const port = s.port;
    const c = await RawClient.connect(port);
    c.send(["app", [[t0, { i: 1 }]], { chunk: "u1" }]);
    expect(await c.next()).toEqual({ ack: "u1" });
    await s.down();
    await c.closed;
    await expect(RawClient.connect(port)).rejects.toThrow();
    await s.up();
    expect(s.port).toBe(port);
    const c2 = await RawClient.connect(port);
    c2.send(["app", [[t0, { i: 2 }]], { chunk: "u2" }]);
    expect(await c2.next()).toEqual({ ack: "u2" });
    expect(s.connections).toBe(2);
    expect(s.chunks.map((k) => k.id)).toEqual(["u1", "u2"]);
  });

  test("stop() closes every socket; waitFor times out with a description", async () => {
    const s = await server();
    const c = await RawClient.connect(s.port);
    await s.waitFor(() => s.openConnections === 1);
    await expect(s.waitFor(() => s.events.length > 0, 50)).rejects.toThrow(/condition not met/);
    await s.stop();
    await c.closed;
    expect(s.openConnections).toBe(0);
  });
});
