/**
 * Forward sink: each batch becomes one PackedForward chunk per tag (usually one), with a chunk id made once
 * and kept for every resend. The batch is delivered when every chunk was acknowledged (require_ack). Chunks
 * go to one of the healthy active servers, chosen by weight; standby servers are used only while every
 * active one is down, and batches return to the active servers as soon as one is back (failback). A server
 * that fails is marked down and probed again with capped backoff. When a probe gets through, the driver is
 * told (onReady), so a batch waiting on its backoff goes at once instead of sitting out its delay.
 */
import type { Batch } from "../../core/batch.ts";
import { Backoff } from "../../core/backoff.ts";
import type { RejectedRecord, SendResult, Sink } from "../../core/component.ts";
import type { Delivery } from "../../core/delivery.ts";
import { describeError, NagareError } from "../../core/errors.ts";
import type { LogRecord } from "../../core/record.ts";
import { compileTemplate, type Template } from "../../core/template.ts";
import type { Logger } from "../../observe/log.ts";
import type { Metrics } from "../../observe/metrics.ts";
import { encodeEntries, encodePackedForward, newChunkId, type ChunkMessage } from "./codec.ts";
import type { ForwardServerConfig, ForwardSinkConfig } from "./config.ts";
import { ForwardConnection, HELO_WAIT_MS, reasonOf } from "./connection.ts";

interface ServerState {
  config: ForwardServerConfig;
  name: string;
  up: boolean;
  connection: ForwardConnection | undefined;
  connecting: Promise<ForwardConnection> | undefined;
  retryAt: number;
  backoff: Backoff;
  /** Why it was marked down, or its last probe failed: what a batch is told while every server is down. */
  lastError: NagareError | undefined;
  upGauge: { value: number };
}

interface PendingChunk {
  message: ChunkMessage;
  acked: boolean;
}

/** A delivery's chunks, made once, and which of them the server acknowledged. */
interface PreparedBatch {
  chunks: PendingChunk[];
  rejected: RejectedRecord[];
}

export class ForwardSink implements Sink<PreparedBatch> {
  readonly type = "forward";
  readonly maxInFlight: number;
  private readonly tag: Template;
  private readonly servers: ServerState[];
  private readonly probe: ReturnType<typeof setInterval>;
  private readonly readyListeners: (() => void)[] = [];
  private closing = false;

  constructor(
    readonly name: string,
    private readonly config: ForwardSinkConfig,
    private readonly log: Logger,
    metrics: Metrics,
  ) {
    const tag = compileTemplate(config.tag);
    if (typeof tag === "string") throw new NagareError("CONFIG_INVALID", tag);
    this.tag = tag;
    this.maxInFlight = config.max_in_flight;
    this.servers = config.servers.map((s) => {
      const name = `${s.host}:${s.port}`;
      const upGauge = metrics.gauge("nagare_forward_server_up", "1 while the forward server is reachable, 0 while it is marked down.", { sink: this.name, server: name });
      upGauge.value = 1;
      return { config: s, name, up: true, connection: undefined, connecting: undefined, retryAt: 0, backoff: new Backoff(500, 30_000), lastError: undefined, upGauge };
    });
    // Down servers are probed in the background, so failback does not wait for a batch to fail elsewhere.
    this.probe = setInterval(() => this.probeDown(), 1000);
    this.probe.unref?.();
  }

  async send(delivery: Delivery<PreparedBatch>): Promise<SendResult> {
    if (delivery.state === undefined) {
      delivery.state = this.prepare(delivery.batch);
      delivery.charge(delivery.state.chunks.reduce((n, c) => n + c.message.bytes.length, 0));
    }
    const prepared = delivery.state;
    for (const chunk of prepared.chunks) {
      if (chunk.acked) continue;
      let server: ServerState | undefined;
      try {
        server = this.pickServer();
        const connection = await this.connectionOf(server);
        await connection.send(chunk.message, delivery.signal);
        chunk.acked = true;
      } catch (err) {
        if (server !== undefined && !delivery.signal.aborted) this.markDown(server, err);
        // The forward protocol has no refusal: a chunk is acknowledged or not. Every failure (a server down, a
        // shared key that does not match, an ack that never came) is retried and nothing is dead-lettered.
        return { status: "failed", error: err instanceof NagareError && err.retryable ? err : new NagareError("SINK_UNAVAILABLE", `sink ${this.name} could not send a chunk`, { cause: err, retryable: true }) };
      }
    }
    return { status: "delivered", rejected: prepared.rejected };
  }

  onReady(wake: () => void): void {
    this.readyListeners.push(wake);
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.probe);
    await Promise.all(this.servers.map((server) => server.connection?.close()));
  }

  /** One chunk per tag, in the order tags first appear; the chunk ids are made here, once. */
  private prepare(batch: Batch): PreparedBatch {
    const groups = new Map<string, LogRecord[]>();
    const rejected: RejectedRecord[] = [];
    for (const record of batch.records) {
      const tag = this.tag.render(record);
      if (tag === "") {
        rejected.push({ record, reason: `the tag template ${JSON.stringify(this.config.tag)} rendered empty` });
        continue;
      }
      let group = groups.get(tag);
      if (group === undefined) groups.set(tag, (group = []));
      group.push(record);
    }
    const chunks = [...groups].map(([tag, records]) => ({
      message: encodePackedForward(tag, encodeEntries(records, this.config.id_field), records.length, newChunkId(), this.config.compress === "gzip"),
      acked: false,
    }));
    return { chunks, rejected };
  }

  /** A healthy active server by weight; a standby only while no active one is up; else why none can be used. */
  private pickServer(): ServerState {
    const active = this.servers.filter((s) => s.up && !s.config.standby);
    const candidates = active.length > 0 ? active : this.servers.filter((s) => s.up);
    if (candidates.length > 0) return weighted(candidates);
    // The reasons themselves, not "down": /health and the driver's ERROR keep naming the real cause.
    const reasons = this.servers.map((s) => s.lastError ?? new NagareError("SINK_UNAVAILABLE", `forward server ${s.name} is being probed`, { retryable: true }));
    if (reasons.length === 1) throw reasons[0]!;
    const code = reasons.every((r) => r.code === reasons[0]!.code) ? reasons[0]!.code : "SINK_UNAVAILABLE";
    throw new NagareError(code, `every forward server is down: ${reasons.map((r) => r.message).join("; ")}`, { retryable: true });
  }

  /** The open connection to `server`, or a new one (listening for a HELO first when `heloWaitMs` is set). */
  private connectionOf(server: ServerState, heloWaitMs = this.config.require_ack ? 0 : HELO_WAIT_MS): Promise<ForwardConnection> {
    if (server.connection !== undefined && !server.connection.closed) return Promise.resolve(server.connection);
    server.connecting ??= ForwardConnection.open(server.config, this.config, heloWaitMs)
      .then((connection) => {
        if (this.closing) void connection.close();
        else server.connection = connection;
        return connection;
      })
      .finally(() => (server.connecting = undefined));
    return server.connecting;
  }

  private markDown(server: ServerState, err: unknown): void {
    void server.connection?.close();
    server.connection = undefined;
    server.lastError = err instanceof NagareError ? err : new NagareError("SINK_UNAVAILABLE", `forward server ${server.name} failed: ${describeError(err)}`, { cause: err, retryable: true });
    if (server.up) this.log.warn(`Forward server ${server.name} is marked down (${reasonOf(server.lastError, server.name)}); ${this.meanwhile(server)}.`);
    server.up = false;
    server.upGauge.value = 0;
    server.retryAt = performance.now() + server.backoff.next();
  }

  /** What happens to the batches while `server` is down, as far as the configuration allows. */
  private meanwhile(server: ServerState): string {
    const others = this.servers.filter((s) => s !== server && s.up);
    if (others.length > 0) return `its chunks go to ${others.map((s) => s.name).join(", ")} while it is probed again`;
    if (this.servers.length === 1) return "batches wait until it answers again, and it is probed again with backoff";
    return "no forward server is up: batches wait until one answers again, and each is probed again with backoff";
  }

  private probeDown(): void {
    const now = performance.now();
    for (const server of this.servers) {
      if (server.up || server.connecting !== undefined || now < server.retryAt) continue;
      // A probe listens for a HELO too: a server that requires shared_key is not "reachable" to this sink.
      this.connectionOf(server, HELO_WAIT_MS).then(
        () => {
          if (this.closing) return;
          server.up = true;
          server.upGauge.value = 1;
          server.backoff.reset();
          server.lastError = undefined;
          this.log.info(`Forward server ${server.name} is reachable again${server.config.standby ? "" : "; batches return to it"}.`);
          for (const wake of this.readyListeners) wake();
        },
        (err) => {
          server.lastError = err instanceof NagareError ? err : new NagareError("SINK_UNAVAILABLE", describeError(err), { cause: err, retryable: true });
          server.retryAt = performance.now() + server.backoff.next();
        },
      );
    }
  }
}

function weighted(servers: ServerState[]): ServerState {
  const total = servers.reduce((sum, s) => sum + s.config.weight, 0);
  let pick = Math.random() * total;
  for (const s of servers) {
    pick -= s.config.weight;
    if (pick < 0) return s;
  }
  return servers[servers.length - 1]!;
}
