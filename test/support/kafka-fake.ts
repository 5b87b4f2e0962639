/**
 * A scripted ProduceClient for unit tests of the Kafka sink's delivery logic: an in-memory log per partition
 * that checks producer ids and sequence numbers the way a broker does (the next batch must start at the last
 * sequence + 1; one of the last 5 batches sent again is a duplicate, answered DUPLICATE_SEQUENCE_NUMBER).
 * Record batches are decoded with @platformatic/kafka's reader, an encoder independent of ours. Faults are
 * injected per produce call. End-to-end claims are tested against a real cluster, not against this.
 */
import { Reader, readRecordsBatch } from "@platformatic/kafka";
import type { ProduceClient, ProducerIdentity, TopicLeaders } from "../../src/sinks/kafka/client.ts";
import { classifyKafkaName, KafkaFailure } from "../../src/sinks/kafka/errors.ts";
import { KAFKA_ERROR_NAMES } from "../../src/sinks/kafka/error-codes.ts";
import type { PartitionData, PartitionResult } from "../../src/sinks/kafka/protocol.ts";

export interface StoredRecord {
  key: string | null;
  value: string;
  id: string;
  timestamp: number;
  producerId: number;
  sequence: number;
}

/** What to do with one produce call: append, refuse with a code, fail in transport before or after appending. */
export type Fault = { code: string } | { transport: "before" | "after" } | { hold: Promise<void> } | undefined;

interface ProducerState {
  lastSeq: number;
  recent: { first: number; last: number }[];
}

const CODE_BY_NAME = new Map(Object.entries(KAFKA_ERROR_NAMES).map(([code, name]) => [name, Number(code)]));

export class FakeKafka implements ProduceClient {
  readonly logs = new Map<string, StoredRecord[]>();
  /** Called for each produce; returns the fault for that call. */
  fault: (data: PartitionData, call: number) => Fault = () => undefined;
  partitions = 3;
  topicFailures = new Map<string, string>();
  /** Every InitProducerId fails with this error name (a cluster without producer ids). */
  initProducerIdFailure: string | undefined;
  /** The next InitProducerId calls fail with these error names, one each. */
  readonly initProducerIdFailures: string[] = [];
  produceCalls = 0;
  inFlightPeak = 0;
  private inFlight = 0;
  private nextProducerId = 1000;
  private readonly producers = new Map<string, ProducerState>();
  /** Producer states the broker "lost" (UNKNOWN_PRODUCER_ID on their next batch). */
  readonly forgotten = new Set<number>();

  async leaders(topics: readonly string[]): Promise<Map<string, TopicLeaders>> {
    const out = new Map<string, TopicLeaders>();
    for (const topic of topics) {
      const failure = this.topicFailures.get(topic);
      out.set(topic, failure === undefined ? { leaders: Array.from({ length: this.partitions }, (_, i) => i + 1) } : { failure: classifyKafkaName(failure) });
    }
    return out;
  }

  invalidate(): void {}

  async initProducerId(): Promise<ProducerIdentity> {
    const failure = this.initProducerIdFailures.shift() ?? this.initProducerIdFailure;
    if (failure !== undefined) throw new KafkaFailure(classifyKafkaName(failure), `InitProducerId refused (${failure})`);
    return { producerId: this.nextProducerId++, producerEpoch: 0 };
  }

  async produce(_leader: number, data: PartitionData): Promise<PartitionResult> {
    const call = this.produceCalls++;
    this.inFlight++;
    this.inFlightPeak = Math.max(this.inFlightPeak, this.inFlight);
    try {
      await Promise.resolve();
      const fault = this.fault(data, call);
      if (fault !== undefined && "hold" in fault) await fault.hold;
      if (fault !== undefined && "transport" in fault && fault.transport === "before") throw new Error("connect ECONNREFUSED (injected)");
      if (fault !== undefined && "code" in fault) return this.answer(data, fault.code);
      const code = this.append(data);
      if (fault !== undefined && "transport" in fault) throw new Error("Request timed out (injected, after the append)");
      return this.answer(data, code);
    } finally {
      this.inFlight--;
    }
  }

  async close(): Promise<void> {}

  /** Every stored record of a topic-partition, in log order. */
  log(topic: string, partition: number): StoredRecord[] {
    return this.logs.get(`${topic}/${partition}`) ?? [];
  }

  all(): StoredRecord[] {
    return [...this.logs.values()].flat();
  }

  private append(data: PartitionData): string {
    const batch = readRecordsBatch(Reader.from(data.batch));
    const producerId = Number(batch.producerId);
    const key = `${data.topic}/${data.partition}`;
    if (producerId >= 0) {
      if (this.forgotten.has(producerId)) return "UNKNOWN_PRODUCER_ID";
      const stateKey = `${key}/${producerId}`;
      const state = this.producers.get(stateKey) ?? { lastSeq: -1, recent: [] };
      const first = batch.firstSequence;
      const last = first + batch.records.length - 1;
      if (state.recent.some((r) => r.first === first && r.last === last)) return "DUPLICATE_SEQUENCE_NUMBER";
      if (first !== state.lastSeq + 1) return "OUT_OF_ORDER_SEQUENCE_NUMBER";
      state.lastSeq = last;
      state.recent.push({ first, last });
      if (state.recent.length > 5) state.recent.shift();
      this.producers.set(stateKey, state);
    }
    const log = this.logs.get(key) ?? [];
    batch.records.forEach((r, i) => {
      const id = r.headers.find(([k]) => k?.toString() === "nagare-id")?.[1]?.toString() ?? "";
      log.push({ key: r.key?.toString() ?? null, value: r.value?.toString() ?? "", id, timestamp: Number(batch.firstTimestamp) + Number(r.timestampDelta), producerId, sequence: batch.firstSequence + i });
    });
    this.logs.set(key, log);
    return "NONE";
  }

  private answer(data: PartitionData, name: string): PartitionResult {
    const errorCode = CODE_BY_NAME.get(name);
    if (errorCode === undefined) throw new Error(`FakeKafka: unknown error name ${name}`);
    return { topic: data.topic, partition: data.partition, errorCode, baseOffset: 0, message: null };
  }
}
