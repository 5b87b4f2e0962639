/** Agent configs with a journald source and a forward sink, for tests and benchmarks. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export function writeForwardConfig(o: {
  dir: string;
  journal: string;
  servers: { host?: string; port: number; standby?: boolean; weight?: number }[];
  tag?: string;
  maxBytes?: string;
  extra?: Record<string, unknown>;
  shutdownTimeout?: string;
}): string {
  const config = {
    data_dir: join(o.dir, "data"),
    buffer: { max_bytes: o.maxBytes ?? "8MiB", batch_timeout: "50ms" },
    checkpoint_interval: "200ms",
    shutdown_timeout: o.shutdownTimeout ?? "10s",
    api: false,
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
  };
  const path = join(o.dir, "nagare.json");
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}
