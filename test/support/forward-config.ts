/** Agent configs with a journald source and a forward sink, for tests and benchmarks. */
import { writeAgentConfig } from "./config.ts";

export function writeForwardConfig(o: {
  dir: string;
  journal: string;
  servers: { host?: string; port: number; standby?: boolean; weight?: number }[];
  tag?: string;
  maxBytes?: string;
  batchMaxBytes?: string;
  extra?: Record<string, unknown>;
  shutdownTimeout?: string;
}): string {
  return writeAgentConfig(o.dir, {
    maxBytes: o.maxBytes,
    batchMaxBytes: o.batchMaxBytes,
    shutdownTimeout: o.shutdownTimeout,
    sources: { journal: { type: "journald", directory: o.journal, start_at: "head" } },
    sinks: {
      forward: {
        type: "forward",
        inputs: ["journal"],
        servers: o.servers.map((s) => ({ host: s.host ?? "127.0.0.1", ...s })),
        tag: o.tag ?? "journal.{{field.SYSLOG_IDENTIFIER}}",
        ack_timeout: "2s",
        connect_timeout: "2s",
        ...o.extra,
      },
    },
  });
}
