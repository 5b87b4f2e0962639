/**
 * Kafka sink: a batch is split into one produce request per (topic, partition), sent together. A batch is
 * delivered only when every request was acknowledged (acks=all by default). On a retry only the requests that
 * failed are sent again — never the whole batch blindly — and a partition's messages keep their read order.
 * A message the brokers can never accept is isolated and dead-lettered; the rest of the batch is delivered.
 */
import type { Batch } from "../../core/batch.ts";
import type { RejectedRecord, SendResult, Sink } from "../../core/component.ts";
import { NagareError } from "../../core/errors.ts";
import type { LogRecord } from "../../core/record.ts";
import { compileTemplate, type Template } from "../../core/template.ts";
import type { Logger } from "../../observe/log.ts";
import type { Metrics } from "../../observe/metrics.ts";
import { KafkaJsClient, type ProduceClient } from "./client.ts";
import { encodeValue, partitionFor, toMessage, type OutgoingMessage } from "./codec.ts";
import type { KafkaSinkConfig } from "./config.ts";
import { classifyKafkaError, type Classified } from "./errors.ts";

interface PartitionRequest {
  topic: string;
  partition: number;
  records: LogRecord[];
  messages: OutgoingMessage[];
  /** Messages already acknowledged (a record-level failure sends the rest one by one). */
  sent: number;
}

interface PendingBatch {
  batch: Batch;
  requests: PartitionRequest[];
  rejected: RejectedRecord[];
}

export class KafkaSink implements Sink {
  readonly type = "kafka";
  private pending: PendingBatch | undefined;
  private readonly topic: Template;
  private readonly key: Template | undefined;
  private readonly errors;

  constructor(
    readonly name: string,
    private readonly config: KafkaSinkConfig,
    log: Logger,
    metrics: Metrics,
    private readonly client: ProduceClient = new KafkaJsClient(config, log),
  ) {
    this.topic = compiled(config.topic);
    this.key = config.key === undefined ? undefined : compiled(config.key);
    this.errors = (error: string) => metrics.counter("nagare_kafka_errors_total", "Failed Kafka requests by Kafka error name.", { sink: name, error });
  }

  async send(batch: Batch): Promise<SendResult> {
    if (this.pending?.batch !== batch) {
      try {
        this.pending = await this.prepare(batch);
      } catch (err) {
        return { status: "retry", error: this.failure(err, classifyKafkaError(err), "fetching topic metadata") };
      }
    }
    const pending = this.pending;
    const open = pending.requests.filter((r) => r.sent < r.messages.length);
    const failures = await Promise.all(open.map((request) => this.sendRequest(request, pending)));
    const failure = failures.find((f) => f !== undefined);
    if (failure !== undefined) return { status: "retry", error: failure };
    this.pending = undefined;
    return { status: "delivered", rejected: pending.rejected };
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** Renders, encodes and groups the batch once; a retry reuses the same messages. */
  private async prepare(batch: Batch): Promise<PendingBatch> {
    const rejected: RejectedRecord[] = [];
    const topics = new Map<string, number>();
    const topicOf: string[] = new Array(batch.records.length);
    for (let i = 0; i < batch.records.length; i++) {
      const topic = this.topic.render(batch.records[i]!);
      topicOf[i] = topic;
      if (topic !== "" && !topics.has(topic)) topics.set(topic, 0);
    }
    for (const topic of topics.keys()) topics.set(topic, await this.client.partitions(topic));
    const requests = new Map<string, PartitionRequest>();
    const streamPartition = new Map<string, number>();
    for (let i = 0; i < batch.records.length; i++) {
      const record = batch.records[i]!;
      const topic = topicOf[i]!;
      if (topic === "") {
        rejected.push({ record, reason: `the topic template ${JSON.stringify(this.config.topic)} rendered empty` });
        continue;
      }
      const value = encodeValue(record, this.config.encoding, this.config.id_field);
      if (value.length > this.config.max_message_bytes) {
        rejected.push({ record, reason: `the message is ${value.length} bytes, over max_message_bytes (${this.config.max_message_bytes})` });
        continue;
      }
      const count = topics.get(topic)!;
      const key = this.key?.render(record);
      let partition: number;
      if (key !== undefined) partition = partitionFor(key, count);
      else {
        const streamKey = `${topic}\0${record.stream}`;
        partition = streamPartition.get(streamKey) ?? partitionFor(record.stream, count);
        streamPartition.set(streamKey, partition);
      }
      const id = `${topic}\0${partition}`;
      let request = requests.get(id);
      if (request === undefined) {
        request = { topic, partition, records: [], messages: [], sent: 0 };
        requests.set(id, request);
      }
      request.records.push(record);
      request.messages.push(toMessage(record, key, value));
    }
    return { batch, requests: [...requests.values()], rejected };
  }

  /** One partition's messages; undefined when they are all acknowledged or dead-lettered. */
  private async sendRequest(request: PartitionRequest, pending: PendingBatch): Promise<NagareError | undefined> {
    try {
      await this.client.produce(request.topic, request.partition, request.sent === 0 ? request.messages : request.messages.slice(request.sent));
      request.sent = request.messages.length;
      return undefined;
    } catch (err) {
      const classified = classifyKafkaError(err);
      if (classified.kind === "record") return this.isolate(request, pending, classified);
      if (classified.kind === "config" || /LEADER|UNKNOWN_TOPIC|NOT_COORDINATOR/.test(classified.name)) this.client.invalidate(request.topic);
      return this.failure(err, classified, `producing to ${request.topic}[${request.partition}]`);
    }
  }

  /**
   * The brokers refused a request for a reason that belongs to a message, not to the request: send the
   * partition's remaining messages one at a time, in order, and dead-letter each one refused the same way.
   */
  private async isolate(request: PartitionRequest, pending: PendingBatch, first: Classified): Promise<NagareError | undefined> {
    if (request.messages.length - request.sent === 1) {
      pending.rejected.push({ record: request.records[request.sent]!, reason: `Kafka refused it: ${first.name}` });
      request.sent++;
      return undefined;
    }
    while (request.sent < request.messages.length) {
      try {
        await this.client.produce(request.topic, request.partition, [request.messages[request.sent]!]);
      } catch (err) {
        const classified = classifyKafkaError(err);
        if (classified.kind !== "record") return this.failure(err, classified, `producing to ${request.topic}[${request.partition}]`);
        pending.rejected.push({ record: request.records[request.sent]!, reason: `Kafka refused it: ${classified.name}` });
      }
      request.sent++;
    }
    return undefined;
  }

  private failure(err: unknown, classified: Classified, doing: string): NagareError {
    this.errors(classified.name).value++;
    const fix = classified.fix === undefined ? "" : `; to fix: ${classified.fix}`;
    return new NagareError("SINK_UNAVAILABLE", `Kafka failed ${doing} (${classified.name})${fix}`, { cause: err, retryable: true });
  }
}

function compiled(text: string): Template {
  const template = compileTemplate(text);
  if (typeof template === "string") throw new NagareError("CONFIG_INVALID", template);
  return template;
}
