/** Agent configs with a journald source and a forward sink, and the forward tests' shared set-up. */
import { join } from "node:path";
import { writeAgentConfig } from "./config.ts";
import { startForwardServer, type ForwardServer, type ForwardServerOptions } from "./forward-server.ts";
import { sequenceEntries, writeJournal } from "./journal.ts";

/** Runs `fn` with a forward test server that is stopped afterwards, whatever happens. */
export async function withServer<T>(options: ForwardServerOptions, fn: (server: ForwardServer) => Promise<T>): Promise<T> {
  const server = await startForwardServer(options);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}

/** A journal directory under `dir` with entries SEQ=1..count. */
export async function journalOf(dir: string, count: number): Promise<string> {
  const journal = join(dir, "journal");
  await writeJournal(journal, sequenceEntries(1, count));
  return journal;
}

export function writeForwardConfig(o: {
  dir: string;
  journal: string;
  servers: { host?: string; port: number; standby?: boolean; weight?: number }[];
  tag?: string;
  maxBytes?: string;
  batchMaxBytes?: string;
  extra?: Record<string, unknown>;
  /** More settings of the journald source. */
  sourceExtra?: Record<string, unknown>;
  /** More sinks beside `forward`. */
  moreSinks?: Record<string, unknown>;
  /** More top-level settings (e.g. `log`). */
  top?: Record<string, unknown>;
  shutdownTimeout?: string;
  api?: string;
}): string {
  return writeAgentConfig(o.dir, {
    maxBytes: o.maxBytes,
    batchMaxBytes: o.batchMaxBytes,
    shutdownTimeout: o.shutdownTimeout,
    api: o.api,
    top: o.top,
    sources: { journal: { type: "journald", directory: o.journal, start_at: "head", ...o.sourceExtra } },
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
      ...o.moreSinks,
    },
  });
}
