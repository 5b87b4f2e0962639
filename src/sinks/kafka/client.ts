/**
 * The Kafka client behind the sink's own interface. kafkajs is in maintenance mode; replacing it means
 * writing another ProduceClient, nothing else. Its own retries are off: the sink driver owns retrying, with
 * the same messages, so a failure is reported at once and classified in one place.
 */
import { CompressionTypes, Kafka, logLevel, type Admin, type Producer, type SASLOptions } from "kafkajs";
import type { Logger } from "../../observe/log.ts";
import { tlsClientOptions } from "../../config/tls.ts";
import type { OutgoingMessage } from "./codec.ts";
import type { KafkaSinkConfig } from "./config.ts";

export interface ProduceClient {
  /** Partition count of a topic, from cached metadata (asking the brokers may create the topic). */
  partitions(topic: string): Promise<number>;
  /** Forgets a topic's metadata, after errors that mean it changed. */
  invalidate(topic: string): void;
  /** Sends messages to one partition; resolves once the brokers acknowledged them as `acks` demands. */
  produce(topic: string, partition: number, messages: OutgoingMessage[]): Promise<void>;
  close(): Promise<void>;
}

const METADATA_TTL_MS = 5 * 60_000;

export class KafkaJsClient implements ProduceClient {
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private connecting: Promise<void> | undefined;
  private readonly metadata = new Map<string, { partitions: number; at: number }>();

  constructor(private readonly config: KafkaSinkConfig, log: Logger) {
    this.kafka = new Kafka({
      clientId: config.client_id,
      brokers: config.brokers,
      connectionTimeout: config.connect_timeout,
      requestTimeout: config.request_timeout,
      retry: { retries: 0 },
      ssl: tlsOptions(config),
      sasl: saslOptions(config),
      logLevel: logLevel.WARN,
      logCreator: () => ({ namespace, level, log: entry }) => {
        const text = `kafkajs ${namespace}: ${entry.message}`;
        log.limited(level <= logLevel.ERROR ? "warn" : "debug", `kafkajs:${namespace}:${entry.message}`, text, { broker: entry.broker });
      },
    });
    this.producer = this.kafka.producer({ allowAutoTopicCreation: true, maxInFlightRequests: config.max_in_flight, idempotent: false, retry: { retries: 0 } });
    this.admin = this.kafka.admin({ retry: { retries: 0 } });
  }

  async partitions(topic: string): Promise<number> {
    const cached = this.metadata.get(topic);
    if (cached !== undefined && Date.now() - cached.at < METADATA_TTL_MS) return cached.partitions;
    await this.connect();
    const { topics } = await this.admin.fetchTopicMetadata({ topics: [topic] });
    const partitions = topics[0]?.partitions.length ?? 0;
    if (partitions === 0) throw Object.assign(new Error(`topic ${topic} has no partitions`), { type: "UNKNOWN_TOPIC_OR_PARTITION" });
    this.metadata.set(topic, { partitions, at: Date.now() });
    return partitions;
  }

  invalidate(topic: string): void {
    this.metadata.delete(topic);
  }

  async produce(topic: string, partition: number, messages: OutgoingMessage[]): Promise<void> {
    await this.connect();
    await this.producer.send({
      topic,
      acks: this.config.acks === "leader" ? 1 : -1,
      timeout: this.config.request_timeout,
      compression: this.config.compression === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None,
      messages: messages.map((m) => ({ partition, key: m.key, value: m.value, headers: m.headers, timestamp: m.timestamp })),
    });
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect()]);
  }

  /** Connects once; a failed attempt is forgotten so the next call tries again. */
  private connect(): Promise<void> {
    this.connecting ??= Promise.all([this.producer.connect(), this.admin.connect()])
      .then(() => undefined)
      .catch((err) => {
        this.connecting = undefined;
        throw err;
      });
    return this.connecting;
  }
}

/** kafkajs `ssl` options from the sink config (files are read when the sink is built). */
export function tlsOptions(config: KafkaSinkConfig) {
  if (config.tls === undefined) return undefined;
  const { ca, ...rest } = tlsClientOptions(config.tls);
  return { ca: ca === undefined ? undefined : [ca], ...rest };
}

export function saslOptions(config: KafkaSinkConfig): SASLOptions | undefined {
  const sasl = config.sasl;
  if (sasl === undefined) return undefined;
  return { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } as SASLOptions;
}
