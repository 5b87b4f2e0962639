/**
 * `nagare checkpoints`: every source's saved position as a table with one row per stream (the journal; each
 * container or log file of a docker source), `--json` for machines, and `--reset` to drop sources' checkpoints.
 *
 * An unusable checkpoint file exits 78 (EX_CONFIG), after the table: like a bad config it is a state on disk that
 * the operator must decide about (`run` refuses a newer format, and reads a source with a corrupt file again from
 * the oldest position it can), and running the command again cannot change it. A checkpoint directory that
 * cannot be read, or a data dir another agent holds (`--reset`), exits 69 (EX_UNAVAILABLE): the files may be
 * fine, this user may not read them now.
 */
import type { Config } from "./config/schema.ts";
import { CheckpointStore, type ListedCheckpoint } from "./core/checkpoint-store.ts";
import { DataDirLock } from "./core/data-dir-lock.ts";
import { describeError, NagareError } from "./core/errors.ts";
import { EX_CONFIG, EX_UNAVAILABLE, EX_USAGE } from "./exit-codes.ts";
import { formatDuration } from "./observe/format.ts";
import { shorten } from "./core/text.ts";
import type { PositionRow } from "./core/descriptor.ts";
import { sourceDescriptor } from "./registry.ts";

export interface CheckpointsOptions {
  json?: boolean;
  reset?: string[];
}

/** One line of the table: a stream of a source and where its saved position is. */
interface Row {
  source: string;
  stream: string;
  age: string;
  position: string;
}

export function checkpoints(config: Config, options: CheckpointsOptions): void {
  const store = new CheckpointStore(config.data_dir);
  if (options.reset !== undefined) return resetCheckpoints(config, store, options.reset);
  let listed: ListedCheckpoint[];
  try {
    listed = store.list(positionSchemaOf);
  } catch (err) {
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    const hint = code === "EACCES" || code === "EPERM" ? "; run this as root or as the user the agent runs as" : "";
    process.stderr.write(`${describeError(err)}${hint}\n`);
    process.exit(EX_UNAVAILABLE);
  }
  if (options.json) {
    const entries = listed.map((l) => (l.checkpoint !== undefined ? { ...l.checkpoint, file: l.file } : { source: l.source, file: l.file, problem: l.problem }));
    process.stdout.write(`${JSON.stringify(entries)}\n`);
  } else if (listed.length === 0) {
    process.stdout.write(`no checkpoints in ${store.dir}\n`);
  } else {
    process.stdout.write(formatTable(listed.flatMap((l) => rowsOf(l, Date.now()))));
  }
  const unusable = listed.filter((l): l is Unusable => l.problem !== undefined);
  for (const l of unusable) process.stderr.write(`${unusableAdvice(l)}\n`);
  if (unusable.length > 0) process.exit(EX_CONFIG);
}

type Unusable = Extract<ListedCheckpoint, { problem: string }>;

const positionSchemaOf = (type: string) => sourceDescriptor(type)?.position?.schema;

function unusableAdvice(l: Unusable): string {
  const reset = `nagare checkpoints --reset ${l.source}`;
  if (l.newer) return `${l.file}: ${l.problem}; \`nagare run\` refuses to start until you run that newer version, or drop it with \`${reset}\``;
  return `${l.file}: unusable (${l.problem}); \`nagare run\` moves it aside and reads source ${l.source} again from the oldest position it can (duplicates, nothing lost); \`${reset}\` makes it start as configured by start_at instead`;
}

function rowsOf(l: ListedCheckpoint, now: number): Row[] {
  if (l.checkpoint === undefined) return [{ source: l.source, stream: "-", age: formatDuration(now - l.modifiedMs), position: `unusable: ${l.problem}` }];
  const { type, position, saved_at } = l.checkpoint;
  const age = formatDuration(now - Date.parse(saved_at));
  return streamsOf(type, position).map(({ stream, summary }) => ({ source: l.source, stream, age, position: summary }));
}

/** A position as the operator reads it, per stream (its source type says how); any other shape as shortened JSON. */
function streamsOf(type: string, position: unknown): PositionRow[] {
  const kind = sourceDescriptor(type)?.position;
  const parsed = kind?.schema.safeParse(position);
  if (kind !== undefined && parsed?.success === true) return kind.describe(parsed.data);
  return [{ stream: "-", summary: shorten(JSON.stringify(position) ?? "none", 80) }];
}

/** Columns padded to their widest cell; the position, which may be a long path, comes last. */
function formatTable(rows: Row[]): string {
  const header: Row = { source: "SOURCE", stream: "STREAM", age: "AGE", position: "POSITION" };
  const all = [header, ...rows];
  const width = (key: "source" | "stream" | "age") => Math.max(...all.map((r) => r[key].length));
  const [ws, wt, wa] = [width("source"), width("stream"), width("age")];
  return all.map((r) => `${r.source.padEnd(ws)}  ${r.stream.padEnd(wt)}  ${r.age.padEnd(wa)}  ${r.position}\n`).join("");
}

/** Drops saved positions while no agent runs on the data dir: those sources then start as configured by start_at. */
function resetCheckpoints(config: Config, store: CheckpointStore, sources: string[]): void {
  const saved = new Set(safeList(store).map((l) => l.source));
  const unknown = sources.filter((s) => !(s in config.sources) && !saved.has(s));
  if (unknown.length > 0) {
    process.stderr.write(`no source named ${unknown.join(", ")} in the config and no checkpoint file for it in ${store.dir}\n`);
    process.exit(EX_USAGE);
  }
  const lock = new DataDirLock(config.data_dir);
  try {
    lock.acquire();
  } catch (err) {
    const hint = err instanceof NagareError && err.code === "DATA_DIR_LOCKED" ? "; stop that agent first" : "";
    process.stderr.write(`cannot reset checkpoints: ${describeError(err)}${hint}\n`);
    process.exit(EX_UNAVAILABLE);
  }
  try {
    for (const source of sources) {
      const removed = store.reset(source);
      process.stdout.write(removed ? `${source}: checkpoint removed; the source starts as configured by start_at on the next run\n` : `${source}: no checkpoint saved\n`);
    }
  } finally {
    lock.release();
  }
}

/** The listing for --reset, where an unreadable directory is reported by the reset itself. */
function safeList(store: CheckpointStore): ListedCheckpoint[] {
  try {
    return store.list(positionSchemaOf);
  } catch {
    return [];
  }
}
