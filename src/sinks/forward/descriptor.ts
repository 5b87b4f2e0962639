/** The forward sink type: its config, its TLS files, and for `--connect` the connection the sink itself would open. */
import { defineSink } from "../../core/descriptor.ts";
import { problems } from "../../config/blocks/environment.ts";
import { tlsFileProblems } from "../../config/blocks/tls.ts";
import { forwardSinkConfig } from "./config.ts";

export const forwardSink = defineSink({
  kind: "sink",
  type: "forward",
  schema: forwardSinkConfig,
  async implementation() {
    const { ForwardSink } = await import("./sink.ts");
    return { build: (name, config, { log, metrics }) => new ForwardSink(name, config, log.child({ component: name }), metrics) };
  },
  environment: (config, at) => problems(...tlsFileProblems(config.tls, at)),
  async probe(config, at, timeoutMs) {
    const { probeServer } = await import("./probe.ts");
    const bounded = { ...config, connect_timeout: Math.min(config.connect_timeout, timeoutMs) };
    return Promise.all(config.servers.map((server) => probeServer(`${at}: server ${server.host}:${server.port}`, server, bounded)));
  },
});
