/** Agent configs with a docker source and a file sink, for tests and benchmarks. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export function writeDockerConfig(o: { dir: string; root: string; include?: string[]; out?: string; maxBytes?: string; source?: Record<string, unknown> }): string {
  const config = {
    data_dir: join(o.dir, "data"),
    buffer: { max_bytes: o.maxBytes ?? "8MiB", batch_timeout: "50ms" },
    checkpoint_interval: "200ms",
    shutdown_timeout: "10s",
    api: false,
    sources: {
      containers: { type: "docker", include: o.include ?? [`${o.root}/*/*-json.log`], rescan_interval: "200ms", poll_interval: "50ms", ...o.source },
    },
    sinks: { out: { type: "file", inputs: ["containers"], path: o.out ?? join(o.dir, "out.jsonl") } },
  };
  const path = join(o.dir, "nagare.json");
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}
