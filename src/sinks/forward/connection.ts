/**
 * One connection to a forward server: TCP or TLS, the optional shared-key handshake, then chunks out and acks
 * in. Every wait is bounded: connecting and the handshake by connect_timeout, each chunk by ack_timeout. A
 * timeout, a wrong or unknown ack, or a protocol error closes the connection and fails every chunk still
 * waiting on it; the sink sends those chunks again, with the same ids, elsewhere or later.
 */
import { connect as connectTcp, type Socket } from "node:net";
import { connect as connectTls } from "node:tls";
import { hostname } from "node:os";
import { decodeMultiStream } from "@msgpack/msgpack";
import { NagareError } from "../../core/errors.ts";
import { tlsClientOptions } from "../../config/tls.ts";
import { checkPong, encodePing, extensionCodec, newChunkId, parseAck, parseHelo, type ChunkMessage, type Helo } from "./codec.ts";
import type { ForwardServerConfig, ForwardSinkConfig } from "./config.ts";

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
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class ForwardConnection {
  readonly name: string;
  private readonly pending = new Map<string, PendingChunk>();
  private readonly slots: (() => void)[] = [];
  /** Until the handshake is over, server messages are queued for it instead of being read as acks. */
  private handshaking = true;
  private readonly early: unknown[] = [];
  private messageWaiter: { resolve: (message: unknown) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly config: ForwardSinkConfig,
    server: ForwardServerConfig,
  ) {
    this.name = `${server.host}:${server.port}`;
  }

  /** Connects, and completes the handshake when a shared key is configured; bounded by connect_timeout. */
  static async open(server: ForwardServerConfig, config: ForwardSinkConfig): Promise<ForwardConnection> {
    const socket = openSocket(server, config);
    const connection = new ForwardConnection(socket, config, server);
    const timer = setTimeout(() => connection.fail(new NagareError("TIMEOUT", `connecting to ${connection.name} took longer than ${config.connect_timeout} ms`, { retryable: true })), config.connect_timeout);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once(config.tls ? "secureConnect" : "connect", resolve);
        socket.once("error", reject);
        socket.once("close", () => reject(connection.failure ?? new Error("connection closed while connecting")));
      });
      connection.listen();
      if (config.shared_key !== undefined) await connection.handshake(config.shared_key);
      connection.handshaking = false;
      return connection;
    } catch (err) {
      connection.close();
      throw new NagareError("SINK_UNAVAILABLE", `cannot connect to forward server ${connection.name}: ${(err as Error).message}`, { cause: err, retryable: true });
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
    await this.write(message.bytes);
    if (acked !== undefined) await untilAborted(acked, signal);
  }

  close(): void {
    this.fail(new NagareError("SINK_UNAVAILABLE", `connection to ${this.name} closed`, { retryable: true }));
  }

  private awaitAck(chunk: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new NagareError("TIMEOUT", `no ack for chunk ${chunk} from ${this.name} within ${this.config.ack_timeout} ms; the connection is closed and the chunk will be sent again`, { retryable: true })),
        this.config.ack_timeout,
      );
      this.pending.set(chunk, { resolve, reject, timer });
    });
  }

  private write(bytes: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      // The callback fires once the bytes are handed to the kernel; waiting for it is the drain backpressure.
      this.socket.write(bytes, (err) => (err ? reject(this.fail(err)) : resolve()));
    });
  }

  private async handshake(sharedKey: string): Promise<void> {
    const helo = parseHelo(await this.nextMessage());
    if (helo === undefined) throw new Error("the server did not start the handshake with HELO (is shared_key set on both sides?)");
    const credentials = { selfHostname: this.config.self_hostname ?? hostname(), sharedKey, username: this.config.username ?? "", password: this.config.password ?? "" };
    const salt = newChunkId();
    await this.write(encodePing(helo, credentials, salt));
    const problem = checkPong(await this.nextMessage(), helo as Helo, credentials, salt);
    if (problem !== undefined) throw new Error(problem);
  }

  private nextMessage(): Promise<unknown> {
    if (this.early.length > 0) return Promise.resolve(this.early.shift());
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.messageWaiter = { resolve, reject };
    });
  }

  /** Decodes the server's msgpack stream: handshake messages first, then acks. */
  private listen(): void {
    const queue = new ChunkQueue();
    this.socket.on("data", (chunk: Buffer) => queue.push(chunk));
    this.socket.on("close", () => {
      queue.end();
      this.fail(new NagareError("SINK_UNAVAILABLE", `${this.name} closed the connection`, { retryable: true }));
    });
    this.socket.on("error", (err) => this.fail(err));
    void (async () => {
      try {
        for await (const message of decodeMultiStream(queue, { extensionCodec, rawStrings: true, maxStrLength: 1 << 20, maxBinLength: 1 << 20 })) this.receive(message);
      } catch (err) {
        this.fail(new NagareError("MALFORMED_INPUT", `${this.name} sent bytes that are not msgpack`, { cause: err, retryable: true }));
      }
    })();
  }

  private receive(message: unknown): void {
    if (this.handshaking) {
      const waiter = this.messageWaiter;
      this.messageWaiter = undefined;
      if (waiter) waiter.resolve(message);
      else this.early.push(message);
      return;
    }
    const chunk = parseAck(message);
    const pending = chunk === undefined ? undefined : this.pending.get(chunk);
    if (pending === undefined) {
      this.fail(new NagareError("MALFORMED_INPUT", `${this.name} sent an ack for a chunk it was not sent (${chunk ?? "not an ack"}); the connection is closed`, { retryable: true }));
      return;
    }
    clearTimeout(pending.timer);
    this.pending.delete(chunk!);
    pending.resolve();
    this.slots.shift()?.();
  }

  /** Closes the connection for good and fails everything waiting on it; returns the error. */
  private fail(err: Error): Error {
    if (this.failure === undefined) {
      this.failure = err;
      this.socket.destroy();
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
