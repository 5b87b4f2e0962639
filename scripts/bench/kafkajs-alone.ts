/**
 * The ceiling kafkajs itself puts on the Kafka sink: 200,000 pre-built ~1 KB messages produced with acks=all to
 * librdkafka's mock cluster in sends of 390 messages (the size of one default batch), with no journal reading,
 * parsing or encoding at all. Compare with scripts/bench/journald-kafka.sh.
 *   node_modules/.bin/bun scripts/bench/kafkajs-alone.ts
 */
import { Kafka, logLevel } from "kafkajs";
import { startMockCluster } from "../../test/support/kafka.ts";
const cluster = await startMockCluster({ brokers: 3, topics: [{ name: "logs", partitions: 6 }] });
const kafka = new Kafka({ clientId: "b", brokers: cluster.brokers, retry: { retries: 0 }, logLevel: logLevel.NOTHING });
const producer = kafka.producer({ retry: { retries: 0 } });
await producer.connect();
const value = "x".repeat(950);
const N = 200_000, B = 390;
const t = performance.now();
for (let i = 0; i < N; i += B) {
  const messages = [];
  for (let j = 0; j < B; j++) messages.push({ partition: 0, value: Buffer.from(value), headers: { "nagare-id": "0123456789abcdef0123456789abcdef" }, timestamp: String(Date.now()) });
  await producer.send({ topic: "logs", acks: -1, messages });
}
const ms = performance.now() - t;
console.log(`kafkajs alone: ${N} messages of ~1 KB in batches of ${B}: ${ms.toFixed(0)} ms = ${Math.round(N / (ms / 1000))} msg/s`);
await producer.disconnect(); await cluster.stop();
