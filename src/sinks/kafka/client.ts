/**
 * What the producer needs from a Kafka cluster — partition leaders, a producer id, produce requests to a
 * leader — behind one interface (ProduceClient), so the delivery logic can be tested against a scripted one.
 * KafkaClient is the real one: one connection per broker, metadata cached per topic (bounded: at most
 * `maxTopics` topics, each for at most `metadataMaxAgeMs`), and requests in the versions each broker speaks.
 */
import { tlsClientOptions } from "../../config/blocks/tls.ts";
import { NagareError } from "../../core/errors.ts";
import { splitHostPort } from "../../core/host-port.ts";
import { BrokerConnection, type BrokerOptions } from "./broker.ts";
import type { KafkaSinkConfig } from "./config.ts";
import { classifyKafkaCode, classifyKafkaName, KafkaFailure, type Classified } from "./errors.ts";
import {
  API_INIT_PRODUCER_ID,
  API_METADATA,
  API_PRODUCE,
  decodeInitProducerId,
  decodeMetadata,
  decodeProduce,
  encodeInitProducerId,
  encodeMetadata,
  encodeProduce,
  type BrokerAddress,
  type PartitionData,
  type PartitionResult,
} from "./protocol.ts";

/** InitProducerId answers that mean "ask again in a moment". */
const COORDINATOR_SETTLING = new Set(["COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR"]);

/** A topic's partitions: the leader of each (-1 while it has none), or why the topic cannot be used. */
export type TopicLeaders = { leaders: readonly number[] } | { failure: Classified };

export interface ProducerIdentity {
  producerId: number;
  producerEpoch: number;
}

export interface ProduceClient {
  /** Leaders of each topic, from cached metadata where it is fresh; one request for the rest. */
  leaders(topics: readonly string[]): Promise<Map<string, TopicLeaders>>;
  /** Forgets a topic's metadata, after errors that mean it changed (a leader moved, a topic appeared). */
  invalidate(topic: string): void;
  /** A new producer id for idempotent delivery; throws a KafkaFailure when the cluster cannot give one. */
  initProducerId(): Promise<ProducerIdentity>;
  /** One record batch to its partition's leader; resolves with the broker's answer, throws on transport failure. */
  produce(leader: number, data: PartitionData): Promise<PartitionResult>;
  close(): Promise<void>;
}

export interface KafkaClientOptions extends BrokerOptions {
  /** Bootstrap brokers, host:port. */
  brokers: readonly string[];
  acks: number;
  /** How long a broker may wait for its replicas before it answers a produce request. */
  produceTimeoutMs: number;
  /** Ask brokers to create a topic that does not exist (their auto.create.topics.enable must allow it). */
  allowAutoCreateTopics: boolean;
  metadataMaxAgeMs: number;
  maxTopics: number;
}

export class KafkaClient implements ProduceClient {
  private readonly bootstrap: { host: string; port: number }[];
  private readonly addresses = new Map<number, BrokerAddress>();
  private readonly connections = new Map<string, Promise<BrokerConnection>>();
  /** Topic metadata in least-recently-used order (a Map iterates in insertion order; a hit re-inserts). */
  private readonly topics = new Map<string, { state: TopicLeaders; at: number }>();

  constructor(private readonly options: KafkaClientOptions) {
    this.bootstrap = options.brokers.map(splitHostPort);
  }

  async leaders(topics: readonly string[]): Promise<Map<string, TopicLeaders>> {
    const out = new Map<string, TopicLeaders>();
    const missing: string[] = [];
    const now = performance.now();
    for (const topic of topics) {
      const cached = this.topics.get(topic);
      if (cached !== undefined && now - cached.at < this.options.metadataMaxAgeMs) {
        this.topics.delete(topic);
        this.topics.set(topic, cached);
        out.set(topic, cached.state);
      } else missing.push(topic);
    }
    if (missing.length > 0) for (const [topic, state] of await this.fetchMetadata(missing)) out.set(topic, state);
    return out;
  }

  invalidate(topic: string): void {
    this.topics.delete(topic);
  }

  /**
   * A producer id. A cluster that just started (or moved its coordinator) answers with a coordinator that is
   * still loading: that is asked again a few times, briefly, before it counts as a failed attempt.
   */
  async initProducerId(): Promise<ProducerIdentity> {
    for (let attempt = 0; ; attempt++) {
      const broker = await this.anyBroker();
      const version = broker.version(API_INIT_PRODUCER_ID);
      if (version === undefined) throw new KafkaFailure(classifyKafkaName("UNSUPPORTED_VERSION"), `${broker.name} does not offer InitProducerId`);
      const answer = await broker.request(API_INIT_PRODUCER_ID, version, encodeInitProducerId(), decodeInitProducerId).catch((err) => {
        throw KafkaFailure.from(err, `InitProducerId on ${broker.name}`);
      });
      if (answer.errorCode === 0) return { producerId: answer.producerId, producerEpoch: answer.producerEpoch };
      const classified = classifyKafkaCode(answer.errorCode);
      if (!COORDINATOR_SETTLING.has(classified.name) || attempt >= 8) throw new KafkaFailure(classified, `${broker.name} refused InitProducerId (${classified.name})`);
      await Bun.sleep(Math.min(1000, 50 * 2 ** attempt));
    }
  }

  async produce(leader: number, data: PartitionData): Promise<PartitionResult> {
    const broker = await this.connectionTo(leader);
    const version = broker.version(API_PRODUCE);
    if (version === undefined) throw new KafkaFailure(classifyKafkaName("NO_COMMON_VERSION"), `${broker.name} speaks no Produce version this client knows`);
    const timeout = this.options.produceTimeoutMs;
    const results = await broker.request(API_PRODUCE, version, encodeProduce(this.options.acks, timeout, [data]), (r) => decodeProduce(version, r)).catch((err) => {
      throw KafkaFailure.from(err, `producing to ${data.topic}[${data.partition}] on ${broker.name}`);
    });
    const result = results.find((r) => r.topic === data.topic && r.partition === data.partition);
    if (result === undefined) throw new KafkaFailure(classifyKafkaName("MISSING_PARTITION_RESPONSE"), `${broker.name} did not answer for ${data.topic}[${data.partition}]`);
    return result;
  }

  async close(): Promise<void> {
    const connections = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(connections.map((c) => c.then((b) => b.close(), () => undefined)));
  }

  /** One Metadata request for `topics`; the answer is cached, topic errors included (they may be retried later). */
  private async fetchMetadata(topics: string[]): Promise<Map<string, TopicLeaders>> {
    const broker = await this.anyBroker();
    const version = broker.version(API_METADATA);
    if (version === undefined) throw new KafkaFailure(classifyKafkaName("NO_COMMON_VERSION"), `${broker.name} speaks no Metadata version this client knows`);
    const answer = await broker.request(API_METADATA, version, encodeMetadata(version, topics, this.options.allowAutoCreateTopics), (r) => decodeMetadata(version, r)).catch((err) => {
      throw KafkaFailure.from(err, `fetching metadata from ${broker.name}`);
    });
    for (const address of answer.brokers) this.addresses.set(address.nodeId, address);
    const out = new Map<string, TopicLeaders>();
    const at = performance.now();
    for (const topic of answer.topics) {
      let state: TopicLeaders;
      if (topic.errorCode !== 0) state = { failure: classifyKafkaCode(topic.errorCode) };
      else {
        const leaders: number[] = new Array(topic.partitions.length).fill(-1);
        for (const p of topic.partitions) if (p.index >= 0 && p.index < leaders.length) leaders[p.index] = p.errorCode === 0 || p.leader >= 0 ? p.leader : -1;
        state = leaders.length === 0 ? { failure: classifyKafkaName("UNKNOWN_TOPIC_OR_PARTITION") } : { leaders };
      }
      out.set(topic.name, state);
      // Topic errors are remembered briefly only: the topic may be created any moment.
      this.remember(topic.name, state, "failure" in state ? at - this.options.metadataMaxAgeMs + 1000 : at);
    }
    for (const topic of topics) if (!out.has(topic)) out.set(topic, { failure: classifyKafkaName("UNKNOWN_TOPIC_OR_PARTITION") });
    return out;
  }

  private remember(topic: string, state: TopicLeaders, at: number): void {
    this.topics.delete(topic);
    this.topics.set(topic, { state, at });
    while (this.topics.size > this.options.maxTopics) this.topics.delete(this.topics.keys().next().value as string);
  }

  /** A connection to any broker: known brokers first, then the bootstrap list, each tried in turn. */
  private async anyBroker(): Promise<BrokerConnection> {
    const candidates = [...[...this.addresses.values()].map((a) => ({ host: a.host, port: a.port })), ...this.bootstrap];
    if (candidates.length === 0) throw new NagareError("INTERNAL", "the Kafka client was made without a broker address, which the config does not allow");
    let last: unknown;
    for (const { host, port } of candidates) {
      try {
        return await this.connect(host, port);
      } catch (err) {
        last = err;
      }
    }
    throw KafkaFailure.from(last, `connecting to the brokers (${this.options.brokers.join(", ")})`);
  }

  private connectionTo(nodeId: number): Promise<BrokerConnection> {
    const address = this.addresses.get(nodeId);
    if (address === undefined) return Promise.reject(new KafkaFailure(classifyKafkaName("LEADER_NOT_AVAILABLE"), `broker ${nodeId} is not in the metadata`));
    return this.connect(address.host, address.port).catch((err) => {
      throw KafkaFailure.from(err, `connecting to broker ${nodeId} (${address.host}:${address.port})`);
    });
  }

  /** The open connection to host:port, or a new one; a failed or closed one is replaced on the next call. */
  private connect(host: string, port: number): Promise<BrokerConnection> {
    const key = `${host}:${port}`;
    const existing = this.connections.get(key);
    if (existing !== undefined) {
      return existing.then((b) => (b.closed ? this.reconnect(key, host, port, existing) : b), () => this.reconnect(key, host, port, existing));
    }
    return this.reconnect(key, host, port, undefined);
  }

  private reconnect(key: string, host: string, port: number, stale: Promise<BrokerConnection> | undefined): Promise<BrokerConnection> {
    const current = this.connections.get(key);
    if (current !== undefined && current !== stale) return current;
    const opening = BrokerConnection.open(host, port, this.options);
    this.connections.set(key, opening);
    opening.catch(() => {
      if (this.connections.get(key) === opening) this.connections.delete(key);
    });
    return opening;
  }
}

/** The client a Kafka sink's config asks for. */
export function createKafkaClient(config: KafkaSinkConfig): KafkaClient {
  const sasl = config.sasl;
  return new KafkaClient({
    clientId: config.client_id,
    brokers: config.brokers,
    acks: config.acks === "leader" ? 1 : -1,
    produceTimeoutMs: config.request_timeout,
    // The broker answers REQUEST_TIMED_OUT after produceTimeoutMs; the connection gives up a little later.
    requestTimeoutMs: config.request_timeout + 5000,
    connectTimeoutMs: config.connect_timeout,
    tls: config.tls === undefined ? undefined : tlsClientOptions(config.tls),
    sasl: sasl === undefined ? undefined : { mechanism: SASL_MECHANISMS[sasl.mechanism], username: sasl.username, password: sasl.password },
    allowAutoCreateTopics: config.allow_auto_create_topics,
    metadataMaxAgeMs: config.metadata_max_age,
    maxTopics: 1000,
  });
}

const SASL_MECHANISMS = { plain: "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "scram-sha-512": "SCRAM-SHA-512" } as const;

