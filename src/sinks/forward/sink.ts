/**
 * Forward sink: each batch becomes one PackedForward chunk per tag (usually one), with a chunk id made once
 * and kept for every resend. The batch is delivered when every chunk was acknowledged (require_ack). Chunks
 * go to one of the healthy active servers, chosen by weight; standby servers are used only while every
 * active one is down, and batches return to the active servers as soon as one is back (failback). A server
 * that fails is marked down and probed again with capped backoff.
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
import { ForwardConnection } from "./connection.ts";

interface ServerState {
  config: ForwardServerConfig;
  name: string;
  up: boolean;
  connection: ForwardConnection | undefined;
  connecting: Promise<ForwardConnection> | undefined;
  retryAt: number;
  backoff: Backoff;
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
      return { config: s, name, up: true, connection: undefined, connecting: undefined, retryAt: 0, backoff: new Backoff(500, 30_000), upGauge };
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
        return { status: "retry", error: err instanceof NagareError ? err : new NagareError("SINK_UNAVAILABLE", describeError(err), { cause: err, retryable: true }) };
      }
    }
    return { status: "delivered", rejected: prepared.rejected };
  }

  async close(): Promise<void> {
    clearInterval(this.probe);
    for (const server of this.servers) server.connection?.close();
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

  /** A healthy active server by weight; a standby only while no active one is up; else the one due for a retry. */
  private pickServer(): ServerState {
    const active = this.servers.filter((s) => s.up && !s.config.standby);
    const candidates = active.length > 0 ? active : this.servers.filter((s) => s.up);
    if (candidates.length > 0) return weighted(candidates);
    const due = [...this.servers].sort((a, b) => Number(a.config.standby) - Number(b.config.standby) || a.retryAt - b.retryAt)[0]!;
    throw new NagareError("SINK_UNAVAILABLE", `every forward server is down; ${due.name} is tried again in ${Math.max(0, Math.round(due.retryAt - performance.now()))} ms`, { retryable: true });
  }

  private connectionOf(server: ServerState): Promise<ForwardConnection> {
    if (server.connection !== undefined && !server.connection.closed) return Promise.resolve(server.connection);
    server.connecting ??= ForwardConnection.open(server.config, this.config)
      .then((connection) => {
        server.connection = connection;
        return connection;
      })
      .finally(() => (server.connecting = undefined));
    return server.connecting;
  }

  private markDown(server: ServerState, err: unknown): void {
    server.connection?.close();
    server.connection = undefined;
    if (server.up) this.log.warn(`Forward server ${server.name} is marked down (${describeError(err)}); chunks go to the other servers while it is probed again.`);
    server.up = false;
    server.upGauge.value = 0;
    server.retryAt = performance.now() + server.backoff.next();
  }

  private probeDown(): void {
    const now = performance.now();
    for (const server of this.servers) {
      if (server.up || server.connecting !== undefined || now < server.retryAt) continue;
      this.connectionOf(server).then(
        () => {
          server.up = true;
          server.upGauge.value = 1;
          server.backoff.reset();
          this.log.info(`Forward server ${server.name} is reachable again${server.config.standby ? "" : "; batches return to it"}.`);
        },
        () => (server.retryAt = performance.now() + server.backoff.next()),
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
