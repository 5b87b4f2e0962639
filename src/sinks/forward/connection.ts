/**
 * One connection to a forward server: TCP or TLS, the optional shared-key handshake, then chunks out and acks
 * in. Every wait is bounded: connecting and the handshake by connect_timeout, each chunk by ack_timeout. A
 * timeout, a wrong or unknown ack, or a protocol error closes the connection and fails every chunk still
 * waiting on it; the sink sends those chunks again, with the same ids, elsewhere or later.
 *
 * A server that requires the handshake speaks first (HELO). Without a shared_key, that HELO is recognised
 * wherever it arrives and named as what it is: the server requires shared_key. A connection ends with a FIN
 * (and, over TLS, a close_notify alert) after what was written is flushed, not with a reset.
 */
import { connect as connectTcp, type Socket } from "node:net";
import { connect as connectTls } from "node:tls";
import { hostname } from "node:os";
import { decodeMultiStream } from "@msgpack/msgpack";
import { describeError, NagareError } from "../../core/errors.ts";
import { tlsClientOptions } from "../../config/blocks/tls.ts";
import { checkPong, encodePing, extensionCodec, newChunkId, parseAck, parseHelo, type ChunkMessage, type Helo } from "./codec.ts";
import type { ForwardServerConfig, ForwardSinkConfig } from "./config.ts";

/**
 * How long a connection without shared_key listens for a HELO before it is used, where it matters: a probe
 * (nothing else would reveal the handshake) and require_ack false (a chunk written to a server that wants a
 * PING first would count as delivered and be lost). in_forward and Fluent Bit send HELO as soon as they accept.
 */
export const HELO_WAIT_MS = 500;
/** How long a closing connection may take to flush and end cleanly before it is cut. */
const CLOSE_GRACE_MS = 1000;

/** A push-fed async iterable of socket chunks, for the msgpack stream decoder. */
class ChunkQueue implements AsyncIterable<Uint8Array> {
  private items: Uint8Array[] = [];
  private waiting: ((r: IteratorResult<Uint8Array>) => void) | undefined;
  private ended = false;

  push(chunk: Uint8Array): void {
    if (this.waiting) {
      const wake = this.waiting;
      this.waiting = undefined;
      wake({ value: chunk, done: false });
    } else this.items.push(chunk);
  }

  end(): void {
    this.ended = true;
    this.waiting?.({ value: undefined, done: true });
    this.waiting = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiting = resolve));
      },
    };
  }
}

interface PendingChunk {
  resolve: () => void;
  reject: (err: NagareError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Where opening stands: it decides how a timeout or a close is worded. */
type Stage = "connecting" | "helo" | "pong" | "open";

/** nextMessage's answer when the wait ran out. */
const NOTHING = Symbol("nothing");

export class ForwardConnection {
  readonly name: string;
  private readonly pending = new Map<string, PendingChunk>();
  private readonly slots: (() => void)[] = [];
  private stage: Stage = "connecting";
  /** Until open() is over, server messages are queued for it instead of being read as acks. */
  private readonly early: unknown[] = [];
  private messageWaiter: { resolve: (message: unknown) => void; reject: (err: NagareError) => void } | undefined;
  private failure: NagareError | undefined;
  private readonly ended: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly config: ForwardSinkConfig,
    server: ForwardServerConfig,
  ) {
    this.name = `${server.host}:${server.port}`;
    this.ended = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  /**
   * Connects and completes the handshake when a shared key is configured, bounded by connect_timeout. Without
   * a shared key and with `heloWaitMs`, listens that long for a HELO first and fails if one comes.
   */
  static async open(server: ForwardServerConfig, config: ForwardSinkConfig, heloWaitMs = 0): Promise<ForwardConnection> {
    const socket = openSocket(server, config);
    const connection = new ForwardConnection(socket, config, server);
    const timer = setTimeout(() => connection.fail(connection.timeoutError()), config.connect_timeout);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once(config.tls ? "secureConnect" : "connect", resolve);
        socket.once("error", reject);
        socket.once("close", () => reject(connection.failure ?? connection.closedError()));
      });
      connection.stage = "helo";
      connection.listen();
      if (config.shared_key !== undefined) await connection.handshake(config.shared_key);
      else if (heloWaitMs > 0) await connection.listenForHelo(Math.min(heloWaitMs, config.connect_timeout));
      connection.stage = "open";
      for (const message of connection.early.splice(0)) connection.receive(message);
      if (connection.failure) throw connection.failure;
      return connection;
    } catch (err) {
      const error = err instanceof NagareError ? err : new NagareError("SINK_UNAVAILABLE", `cannot connect to forward server ${connection.name}: ${describeError(err)}`, { cause: err, retryable: true });
      connection.fail(error);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Writes a chunk; resolves when the server acknowledged it (or, without require_ack, once it is written).
   * An aborted `signal` (shutdown) stops the wait; the chunk then counts as not acknowledged.
   */
  async send(message: ChunkMessage, signal: AbortSignal): Promise<void> {
    while (this.pending.size >= this.config.max_in_flight && !this.closed) await new Promise<void>((resolve) => this.slots.push(resolve));
    if (this.failure) throw this.failure;
    const acked = this.config.require_ack ? this.awaitAck(message.chunk) : undefined;
    // The connection may fail while the write is pending (a HELO, a close): the ack's rejection is then awaited
    // by nobody, and must not surface as an unhandled rejection; the write's own error is what send throws.
    acked?.catch(() => {});
    await this.write(message.bytes);
    if (acked !== undefined) await untilAborted(acked, signal);
  }

  /** Ends the connection after what was written is flushed (over TLS with close_notify); resolves once closed. */
  close(): Promise<void> {
    this.fail(new NagareError("SINK_UNAVAILABLE", `the connection to forward server ${this.name} was closed`, { retryable: true }));
    return this.ended;
  }

  private awaitAck(chunk: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new NagareError("TIMEOUT", `no ack for chunk ${chunk} from forward server ${this.name} within ${this.config.ack_timeout} ms; the connection is closed and the chunk will be sent again`, { retryable: true })),
        this.config.ack_timeout,
      );
      this.pending.set(chunk, { resolve, reject, timer });
    });
  }

  private write(bytes: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      // The callback fires once the bytes are handed to the kernel; waiting for it is the drain backpressure.
      this.socket.write(bytes, (err) => (err ? reject(this.fail(this.socketError(err))) : resolve()));
    });
  }

  private async handshake(sharedKey: string): Promise<void> {
    const first = await this.nextMessage();
    const helo = parseHelo(first);
    if (helo === undefined) throw new NagareError("CONFIG_INVALID", `forward server ${this.name} did not begin with a handshake (HELO) although shared_key is set; it sent ${describeMessage(first)}`, { retryable: true });
    const credentials = { selfHostname: this.config.self_hostname ?? hostname(), sharedKey, username: this.config.username ?? "", password: this.config.password ?? "" };
    const salt = newChunkId();
    this.stage = "pong";
    await this.write(encodePing(helo, credentials, salt));
    const problem = checkPong(await this.nextMessage(), helo as Helo, credentials, salt);
    if (problem !== undefined) throw new NagareError("CONFIG_INVALID", `forward server ${this.name} ${problem}`, { retryable: true });
  }

  /** Without a shared key: a server that speaks first with HELO requires one. */
  private async listenForHelo(waitMs: number): Promise<void> {
    const first = await this.nextMessage(waitMs);
    if (first === NOTHING) return;
    const helo = parseHelo(first);
    if (helo !== undefined) throw this.requiresSharedKey(helo);
    this.early.unshift(first);
  }

  private requiresSharedKey(helo: Helo): NagareError {
    // A HELO with an auth salt asks for user authentication too (in_forward sends one whenever <security> is on).
    const advice = helo.auth.length > 0 ? "set shared_key (and username and password if the server has user authentication)" : "set shared_key";
    return new NagareError("CONFIG_INVALID", `forward server ${this.name} requires shared_key: it began with a handshake (HELO) and this sink has none; ${advice}`, { retryable: true });
  }

  /** The next server message while opening; NOTHING when `waitMs` passes first. */
  private nextMessage(waitMs?: number): Promise<unknown> {
    if (this.early.length > 0) return Promise.resolve(this.early.shift());
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      const timer =
        waitMs === undefined
          ? undefined
          : setTimeout(() => {
              this.messageWaiter = undefined;
              resolve(NOTHING);
            }, waitMs);
      this.messageWaiter = {
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  /** Decodes the server's msgpack stream: handshake messages first, then acks. */
  private listen(): void {
    const queue = new ChunkQueue();
    let socketClosed = false;
    this.socket.on("data", (chunk: Buffer) => queue.push(chunk));
    // The messages that arrived before the close are read first: a refusal (PONG false) comes with one.
    this.socket.on("close", () => {
      socketClosed = true;
      queue.end();
    });
    this.socket.on("error", (err) => this.fail(this.socketError(err)));
    void (async () => {
      try {
        for await (const message of decodeMultiStream(queue, { extensionCodec, rawStrings: true, maxStrLength: 1 << 20, maxBinLength: 1 << 20 })) this.receive(message);
        this.fail(this.closedError());
      } catch (err) {
        if (socketClosed) this.fail(this.closedError());
        else this.fail(new NagareError("MALFORMED_INPUT", `forward server ${this.name} sent bytes that are not msgpack; the connection is closed`, { cause: err, retryable: true }));
      }
    })();
  }

  private receive(message: unknown): void {
    if (this.stage !== "open") {
      const waiter = this.messageWaiter;
      this.messageWaiter = undefined;
      if (waiter) waiter.resolve(message);
      else this.early.push(message);
      return;
    }
    const chunk = parseAck(message);
    const pending = chunk === undefined ? undefined : this.pending.get(chunk);
    if (pending !== undefined) {
      clearTimeout(pending.timer);
      this.pending.delete(chunk!);
      pending.resolve();
      this.slots.shift()?.();
      return;
    }
    const helo = chunk === undefined ? parseHelo(message) : undefined;
    if (helo !== undefined) this.fail(this.requiresSharedKey(helo));
    else if (chunk !== undefined) this.fail(new NagareError("MALFORMED_INPUT", `forward server ${this.name} sent an ack for a chunk it was not sent (${chunk}); the connection is closed`, { retryable: true }));
    else this.fail(new NagareError("MALFORMED_INPUT", `forward server ${this.name} sent ${describeMessage(message)} where an ack was expected; the connection is closed`, { retryable: true }));
  }

  private timeoutError(): NagareError {
    const ms = this.config.connect_timeout;
    const text: Record<Stage, string> = {
      connecting: `cannot connect to forward server ${this.name}: no ${this.config.tls ? "TLS " : ""}connection within ${ms} ms (connect_timeout)`,
      helo: `forward server ${this.name} sent no handshake (HELO) within ${ms} ms although shared_key is set; does the server have a <security> section?`,
      pong: `forward server ${this.name} did not answer the handshake (PING) within ${ms} ms`,
      open: `forward server ${this.name} did not open the connection within ${ms} ms`,
    };
    // Silence after connecting, with shared_key set, is a mismatch of settings: a server with <security> sends HELO at once.
    return new NagareError(this.stage === "helo" ? "CONFIG_INVALID" : "TIMEOUT", text[this.stage], { retryable: true });
  }

  private closedError(): NagareError {
    const text: Record<Stage, string> = {
      connecting: `forward server ${this.name} closed the connection while it was being opened`,
      helo: `forward server ${this.name} closed the connection right after accepting it`,
      pong: `forward server ${this.name} closed the connection during the handshake without an answer (Fluent Bit does that when shared_key does not match)`,
      open: `forward server ${this.name} closed the connection`,
    };
    return new NagareError("SINK_UNAVAILABLE", text[this.stage], { retryable: true });
  }

  private socketError(err: Error): NagareError {
    return new NagareError("SINK_UNAVAILABLE", `the connection to forward server ${this.name} failed: ${describeError(err)}`, { cause: err, retryable: true });
  }

  /** Closes the connection for good and fails everything waiting on it; returns the error. */
  private fail(err: NagareError): NagareError {
    if (this.failure === undefined) {
      this.failure = err;
      this.shut();
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      this.pending.clear();
      for (const wake of this.slots.splice(0)) wake();
      this.messageWaiter?.reject(err);
      this.messageWaiter = undefined;
    }
    return this.failure;
  }

  /**
   * An open connection ends with end(): FIN after the written bytes, and over TLS a close_notify alert first,
   * so the server sees a clean close rather than a truncated stream. Bounded: a peer that does not read is cut.
   */
  private shut(): void {
    if (this.stage === "connecting" || this.socket.destroyed) {
      this.socket.destroy();
      return;
    }
    this.socket.end();
    const cut = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    cut.unref?.();
    this.socket.once("close", () => clearTimeout(cut));
  }
}

function openSocket(server: ForwardServerConfig, config: ForwardSinkConfig): Socket {
  if (config.tls === undefined) return connectTcp({ host: server.host, port: server.port, noDelay: true, keepAlive: true });
  return connectTls({ host: server.host, port: server.port, ...tlsClientOptions(config.tls, server.host) });
}

/** The promise, or a rejection as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new NagareError("CANCELLED", "the agent is stopping", { retryable: true }));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new NagareError("CANCELLED", "the agent is stopping", { retryable: true }));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/** describeError, without the server's name where a line already names it ("refused the handshake: …"). */
export function reasonOf(err: unknown, name: string): string {
  return describeError(err).replace(`cannot connect to forward server ${name}: `, "").replace(`forward server ${name} `, "");
}

function describeMessage(message: unknown): string {
  const text = JSON.stringify(message, (_k, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v));
  return text === undefined ? String(message) : text.slice(0, 120);
}
