/**
 * Kafka sink: a batch becomes one record batch per (topic, partition) — more when it exceeds
 * max_message_bytes — encoded once, on the first attempt, and handed to the producer in read order. The
 * delivery is acknowledged when every one of them was. A retry resends only the record batches that were not
 * acknowledged, byte for byte. Records Kafka can never take are dead-lettered and the rest delivered: a record
 * over max_message_bytes and a topic that is not a legal name before sending; a batch the broker refuses for a
 * record-level reason is split in halves until the refused records stand alone.
 */
import type { RejectedRecord, SendResult, Sink } from "../../core/component.ts";
import type { Delivery } from "../../core/delivery.ts";
import { NagareError } from "../../core/errors.ts";
import type { LogRecord } from "../../core/record.ts";
import { compileTemplate, type Template } from "../../core/template.ts";
import type { Logger } from "../../observe/log.ts";
import type { Metrics } from "../../observe/metrics.ts";
import type { ProduceClient } from "./client.ts";
import { KafkaFailure } from "./errors.ts";
import { encodeValue, ID_HEADER, legalTopic, partitionFor, timestampMs } from "./codec.ts";
import type { KafkaSinkConfig } from "./config.ts";
import { IdempotentProducer, PartitionBatch } from "./producer.ts";
import { RecordBatchBuilder } from "./record-batch.ts";

/** What a delivery keeps between attempts. */
interface PreparedBatch {
  batches: PartitionBatch[];
  rejected: RejectedRecord[];
}

export class KafkaSink implements Sink<PreparedBatch> {
  readonly type = "kafka";
  readonly maxInFlight: number;
  private readonly producer: IdempotentProducer;
  private readonly topic: Template;
  private readonly key: Template | undefined;
  private readonly builder = new RecordBatchBuilder();
  private readonly legal = new Map<string, boolean>();
  /** The submission step (encode, hand over) of each delivery runs after the previous one's, in read order. */
  private turn: Promise<unknown> = Promise.resolve();
  private readonly errors;

  constructor(
    readonly name: string,
    private readonly config: KafkaSinkConfig,
    private readonly client: ProduceClient,
    log: Logger,
    metrics: Metrics,
  ) {
    this.topic = compiled(config.topic);
    this.key = config.key === undefined ? undefined : compiled(config.key);
    this.maxInFlight = config.max_in_flight;
    this.producer = new IdempotentProducer(client, config.max_in_flight_per_partition, config.idempotent ?? config.acks === "all", log, name);
    const errorsOf = metrics.declare("counter", "nagare_kafka_errors_total", "Failed Kafka requests by Kafka error name.");
    this.errors = (error: string) => errorsOf({ sink: name, error });
  }

  async send(delivery: Delivery<PreparedBatch>): Promise<SendResult> {
    const submitted = this.turn.then(() => this.submit(delivery));
    this.turn = submitted.catch(() => undefined);
    let failure: KafkaFailure | undefined;
    try {
      for (const outcome of await Promise.all(await submitted)) if (outcome !== undefined) failure = worse(failure, outcome);
    } catch (err) {
      failure = KafkaFailure.from(err, "preparing a batch");
    }
    if (failure !== undefined) {
      this.errors(failure.classified.name).value++;
      const fix = failure.classified.fix === undefined ? "" : `; to fix: ${failure.classified.fix}`;
      // Retryable even when the brokers refused records for good: those are split off and dead-lettered one by
      // one on the next attempt; what is left is a cluster down or a setup to fix, and no reason to drop data.
      return { status: "failed", error: new NagareError("SINK_UNAVAILABLE", `Kafka: ${failure.message}${fix}`, { cause: failure, retryable: true }) };
    }
    return { status: "delivered", rejected: delivery.state!.rejected };
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** Encodes (first attempt) or refreshes leaders (retries), then hands each open record batch over. */
  private async submit(delivery: Delivery<PreparedBatch>): Promise<Promise<KafkaFailure | undefined>[]> {
    await this.producer.ready(delivery.attempts > 1);
    if (delivery.state === undefined) {
      delivery.state = await this.prepare(delivery.batch.records);
      let bytes = 0;
      for (const batch of delivery.state.batches) bytes += batch.bytes.length;
      delivery.charge(bytes);
    } else await this.refreshLeaders(delivery.state.batches);
    const prepared = delivery.state;
    const sends: Promise<KafkaFailure | undefined>[] = [];
    for (const batch of prepared.batches) {
      if (batch.done) continue;
      if (batch.isolate) sends.push(this.isolate(batch, prepared, delivery.signal));
      else sends.push(this.producer.send(batch, delivery.signal).then((o) => (o.ok ? undefined : this.recordLevel(o.failure, batch, prepared))));
    }
    return sends;
  }

  /** Topic-level refusals dead-letter the batch's records; everything else is retried. */
  private recordLevel(failure: KafkaFailure, batch: PartitionBatch, prepared: PreparedBatch): KafkaFailure | undefined {
    if (failure.classified.kind !== "topic") return failure;
    for (const record of batch.records) prepared.rejected.push({ record, reason: `Kafka refused the topic ${batch.topic}: ${failure.classified.name}` });
    batch.done = true;
    this.producer.delivered(batch);
    return undefined;
  }

  private async prepare(records: readonly LogRecord[]): Promise<PreparedBatch> {
    const rejected: RejectedRecord[] = [];
    const topicOf = this.renderTopics(records, rejected);
    const names = [...new Set(topicOf.filter((t): t is string => t !== undefined))];
    const leaders = names.length === 0 ? new Map() : await this.client.leaders(names);
    // A partition's records, in read order, keyed by topic and partition.
    // A partition's records in read order, with their rendered keys when there is a key template.
    const groups = new Map<string, { topic: string; partition: number; leader: number; records: LogRecord[]; keys: string[] | undefined }>();
    const streamPartition = new Map<string, number>();
    for (let i = 0; i < records.length; i++) {
      const topic = topicOf[i];
      if (topic === undefined) continue;
      const record = records[i]!;
      const state = leaders.get(topic)!;
      if ("failure" in state) {
        if (state.failure.kind === "topic") rejected.push({ record, reason: `Kafka refused the topic ${topic}: ${state.failure.name}` });
        else throw new KafkaFailure(state.failure, `the brokers cannot take records for topic ${topic} (${state.failure.name})`);
        continue;
      }
      const count = state.leaders.length;
      const key = this.key?.render(record);
      let partition: number;
      if (key !== undefined) partition = partitionFor(key, count);
      else {
        const cacheKey = `${topic}\0${record.stream}`;
        partition = streamPartition.get(cacheKey) ?? partitionFor(record.stream, count);
        streamPartition.set(cacheKey, partition);
      }
      const groupKey = `${topic}\0${partition}`;
      let group = groups.get(groupKey);
      if (group === undefined) groups.set(groupKey, (group = { topic, partition, leader: state.leaders[partition]!, records: [], keys: key === undefined ? undefined : [] }));
      group.records.push(record);
      if (key !== undefined) group.keys!.push(key);
    }
    const batches: PartitionBatch[] = [];
    for (const g of groups.values()) batches.push(...this.encode(g.topic, g.partition, g.leader, g.records, rejected, g.keys));
    return { batches, rejected };
  }

  /** The topic of each record; undefined (and rejected) where it renders empty or is not a legal name. */
  private renderTopics(records: readonly LogRecord[], rejected: RejectedRecord[]): (string | undefined)[] {
    const out: (string | undefined)[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const topic = this.topic.constant ?? this.topic.render(records[i]!);
      let legal = this.legal.get(topic);
      if (legal === undefined) {
        legal = legalTopic(topic);
        if (this.legal.size >= 10_000) this.legal.clear();
        this.legal.set(topic, legal);
      }
      if (legal) out[i] = topic;
      else rejected.push({ record: records[i]!, reason: topic === "" ? `the topic template ${JSON.stringify(this.config.topic)} rendered empty` : `the topic ${JSON.stringify(topic)} is not a legal Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)` });
    }
    return out;
  }

  /**
   * One partition's records as record batches of at most max_message_bytes; a record larger alone is rejected.
   * `keys` are the records' rendered keys when the caller has them already.
   */
  private encode(topic: string, partition: number, leader: number, records: LogRecord[], rejected: RejectedRecord[], keys?: readonly string[]): PartitionBatch[] {
    const out: PartitionBatch[] = [];
    const limit = this.config.max_message_bytes;
    const builder = this.builder;
    let members: LogRecord[] = [];
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const value = encodeValue(record, this.config.encoding, this.config.id_field);
      const key = keys === undefined ? this.key?.render(record) : keys[i];
      const at = timestampMs(record);
      if (builder.add(at, key, value, ID_HEADER, record.id, limit)) {
        members.push(record);
        continue;
      }
      if (builder.records > 0) {
        out.push(new PartitionBatch(topic, partition, leader, members, builder.finish(this.config.compression).bytes));
        members = [];
        if (builder.add(at, key, value, ID_HEADER, record.id, limit)) {
          members.push(record);
          continue;
        }
      }
      rejected.push({ record, reason: `the message (a value of ${value.length} bytes) is over max_message_bytes (${limit})` });
    }
    if (builder.records > 0) out.push(new PartitionBatch(topic, partition, leader, members, builder.finish(this.config.compression).bytes));
    return out;
  }

  /** Before a retry: the current leader of every partition still to be sent (a leader may have moved). */
  private async refreshLeaders(batches: PartitionBatch[]): Promise<void> {
    const open = batches.filter((b) => !b.done);
    if (open.length === 0) return;
    const leaders = await this.client.leaders([...new Set(open.map((b) => b.topic))]);
    for (const batch of open) {
      const state = leaders.get(batch.topic);
      if (state === undefined || "failure" in state) continue; // the produce answers again with the reason
      batch.leader = state.leaders[batch.partition] ?? -1;
    }
  }

  /**
   * A batch refused for a record-level reason (too large for the topic, an invalid record) was not written.
   * Its records are sent again in halves, in order, each half split again when refused the same way, until a
   * refused record stands alone: that one is dead-lettered. Runs on a retry, when nothing else is in flight
   * (the driver sends a failed batch alone, and the partition holds newer batches back meanwhile).
   */
  private async isolate(batch: PartitionBatch, prepared: PreparedBatch, signal: AbortSignal): Promise<KafkaFailure | undefined> {
    const pieces: LogRecord[][] = (batch.pieces ??= halves(batch.records));
    while (pieces.length > 0) {
      const rejected: RejectedRecord[] = [];
      const [piece, ...more] = this.encode(batch.topic, batch.partition, batch.leader, pieces[0]!, rejected);
      if (piece !== undefined) piece.retry = true;
      for (const r of rejected) prepared.rejected.push(r);
      if (piece === undefined) {
        pieces.shift();
        continue;
      }
      if (more.length > 0) {
        // Re-encoding never grows a piece; should it, each part becomes a piece of its own.
        pieces.splice(0, 1, piece.records, ...more.map((p) => p.records));
        continue;
      }
      const outcome = await this.producer.send(piece, signal);
      if (!outcome.ok) {
        const kind = outcome.failure.classified.kind;
        if (kind !== "record" && kind !== "topic") return outcome.failure;
        if (kind === "topic" || piece.records.length === 1) {
          for (const record of piece.records) prepared.rejected.push({ record, reason: `Kafka refused it: ${outcome.failure.classified.name}` });
        } else {
          pieces.splice(1, 0, ...halves(piece.records));
        }
      }
      pieces.shift();
    }
    batch.done = true;
    this.producer.delivered(batch);
    return undefined;
  }
}

function halves(records: LogRecord[]): LogRecord[][] {
  if (records.length <= 1) return [records];
  const middle = Math.ceil(records.length / 2);
  return [records.slice(0, middle), records.slice(middle)];
}

/** The failure to report for a delivery: a real cause rather than "an earlier batch failed". */
function worse(current: KafkaFailure | undefined, next: KafkaFailure): KafkaFailure {
  if (current === undefined || current.classified.name === "EARLIER_BATCH_FAILED") return next;
  return current;
}

function compiled(text: string): Template {
  const template = compileTemplate(text);
  if (typeof template === "string") throw new NagareError("CONFIG_INVALID", template);
  return template;
}
