/** Agent configs with a docker source and a file sink, for tests and benchmarks. */
import { join } from "node:path";
import { writeAgentConfig } from "./config.ts";

export function writeDockerConfig(o: { dir: string; root: string; include?: string[]; out?: string; maxBytes?: string; source?: Record<string, unknown>; idField?: boolean }): string {
  return writeAgentConfig(o.dir, {
    maxBytes: o.maxBytes,
    sources: {
      containers: { type: "docker", include: o.include ?? [`${o.root}/*/*-json.log`], rescan_interval: "200ms", poll_interval: "50ms", ...o.source },
    },
    sinks: { out: { type: "file", inputs: ["containers"], path: o.out ?? join(o.dir, "out.jsonl"), id_field: o.idField ?? false } },
  });
}
