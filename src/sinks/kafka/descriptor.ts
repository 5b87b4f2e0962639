/** The kafka sink type: its config, its TLS files, and a connection to each bootstrap broker for `--connect`. */
import { defineSink } from "../../core/descriptor.ts";
import { problems } from "../../config/blocks/environment.ts";
import { tlsFileProblems } from "../../config/blocks/tls.ts";
import { kafkaSinkConfig } from "./config.ts";

export const kafkaSink = defineSink({
  kind: "sink",
  type: "kafka",
  schema: kafkaSinkConfig,
  async implementation() {
    const [{ KafkaSink }, { createKafkaClient }] = await Promise.all([import("./sink.ts"), import("./client.ts")]);
    return { build: (name, config, { log, metrics }) => new KafkaSink(name, config, createKafkaClient(config), log.child({ component: name }), metrics) };
  },
  environment: (config, at) => problems(...tlsFileProblems(config.tls, at)),
  async probe(config, at, timeoutMs) {
    const { probeBroker } = await import("./probe.ts");
    return Promise.all(config.brokers.map((broker) => probeBroker(`${at}: broker ${broker}`, broker, config.tls, timeoutMs)));
  },
});
