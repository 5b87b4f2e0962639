/** Writes agent configs for tests. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestConfigOptions {
  dir: string;
  source: Record<string, unknown>;
  out?: string;
  maxBytes?: string;
  checkpointInterval?: string;
  extraSinks?: Record<string, Record<string, unknown>>;
  idField?: boolean;
  shutdownTimeout?: string;
  /** The HTTP API address; off unless given (tests run agents side by side). */
  api?: string;
}

/** The settings every test config shares (short batch timeout and checkpoint interval, API off), plus its parts. */
export function writeAgentConfig(
  dir: string,
  parts: {
    sources: Record<string, unknown>;
    sinks: Record<string, unknown>;
    maxBytes?: string;
    batchMaxBytes?: string;
    checkpointInterval?: string;
    shutdownTimeout?: string;
    api?: string;
    top?: Record<string, unknown>;
  },
  name = "nagare.json",
): string {
  const config = {
    data_dir: join(dir, "data"),
    buffer: { max_bytes: parts.maxBytes ?? "8MiB", ...(parts.batchMaxBytes === undefined ? {} : { batch_max_bytes: parts.batchMaxBytes }), batch_timeout: "50ms" },
    checkpoint_interval: parts.checkpointInterval ?? "200ms",
    shutdown_timeout: parts.shutdownTimeout ?? "10s",
    api: parts.api === undefined ? false : { address: parts.api },
    sources: parts.sources,
    sinks: parts.sinks,
    ...parts.top,
  };
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

/** A config with one journald source `journal` and one file sink `out`; returns its path. */
export function writeConfig(o: TestConfigOptions, name = "nagare.json"): string {
  return writeAgentConfig(
    o.dir,
    {
      ...o,
      batchMaxBytes: "256KiB",
      sources: { journal: { type: "journald", ...o.source } },
      sinks: { out: { type: "file", inputs: ["journal"], path: o.out ?? join(o.dir, "out.jsonl"), id_field: o.idField ?? false }, ...o.extraSinks },
    },
    name,
  );
}

/** Numeric SEQ values in shipping order. */
export function seqsOf(records: Record<string, unknown>[]): number[] {
  return records.map((r) => Number(r.SEQ));
}

/** Every value of 1..n present at least once; returns [missing count, duplicate count]. */
export function coverage(seqs: number[], from: number, n: number): { missing: number[]; duplicates: number } {
  const seen = new Uint8Array(n);
  let duplicates = 0;
  for (const s of seqs) {
    const i = s - from;
    if (i < 0 || i >= n) continue;
    if (seen[i]) duplicates++;
    else seen[i] = 1;
  }
  const missing: number[] = [];
  for (let i = 0; i < n; i++) if (!seen[i]) missing.push(from + i);
  return { missing, duplicates };
}

/** from, from+1, …, from+count-1 */
export function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

/** A function giving each test case a fresh directory under `root`. */
export function caseDirs(root: string): () => string {
  let n = 0;
  return () => {
    const dir = join(root, `case-${++n}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
}
