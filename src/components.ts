/** The one place that knows every component type: config → running source or sink. */
import type { Sink, Source } from "./core/component.ts";
import type { SinkConfig, SourceConfig } from "./config/schema.ts";
import { JournaldSource } from "./sources/journald/source.ts";
import { DockerSource } from "./sources/docker/source.ts";
import { ConsoleSink } from "./sinks/console/sink.ts";
import { FileSink } from "./sinks/file/sink.ts";
import { KafkaSink } from "./sinks/kafka/sink.ts";
import { createKafkaClient } from "./sinks/kafka/client.ts";
import { ForwardSink } from "./sinks/forward/sink.ts";
import type { Logger } from "./observe/log.ts";
import type { Metrics } from "./observe/metrics.ts";

export function buildSource(name: string, config: SourceConfig): Source {
  switch (config.type) {
    case "journald":
      return new JournaldSource(name, config);
    case "docker":
      return new DockerSource(name, config);
  }
}

export function buildSink(name: string, config: SinkConfig, log: Logger, metrics: Metrics): Sink {
  switch (config.type) {
    case "console":
      return new ConsoleSink(name, config);
    case "file":
      return new FileSink(name, config, log.child({ component: name }));
    case "kafka":
      return new KafkaSink(name, config, createKafkaClient(config), log.child({ component: name }), metrics);
    case "forward":
      return new ForwardSink(name, config, log.child({ component: name }), metrics);
  }
}
