/** Agent configs with a journald source and a Kafka sink, for tests and benchmarks. */
import { writeAgentConfig } from "./config.ts";

export function writeKafkaConfig(o: {
  dir: string;
  journal: string;
  bootstrap: string;
  topic: string;
  key?: string;
  maxBytes?: string;
  extra?: Record<string, unknown>;
  /** Top-level keys to set or override (api, health, ...). */
  top?: Record<string, unknown>;
}): string {
  return writeAgentConfig(o.dir, {
    maxBytes: o.maxBytes,
    top: o.top,
    sources: { journal: { type: "journald", directory: o.journal, start_at: "head" } },
    sinks: {
      kafka: {
        type: "kafka",
        inputs: ["journal"],
        brokers: o.bootstrap.split(","),
        topic: o.topic,
        ...(o.key === undefined ? {} : { key: o.key }),
        request_timeout: "5s",
        connect_timeout: "2s",
        ...o.extra,
      },
    },
  });
}
