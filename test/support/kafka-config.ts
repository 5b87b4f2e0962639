/** Agent configs with a journald source and a Kafka sink, for tests and benchmarks. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

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
  const config = {
    data_dir: join(o.dir, "data"),
    buffer: { max_bytes: o.maxBytes ?? "8MiB", batch_timeout: "50ms" },
    checkpoint_interval: "200ms",
    shutdown_timeout: "10s",
    api: false,
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
  };
  Object.assign(config, o.top);
  const path = join(o.dir, "nagare.json");
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}
