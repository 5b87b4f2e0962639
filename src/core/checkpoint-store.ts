/**
 * One checkpoint file per source in `<data_dir>/checkpoints/<source>.json`, versioned JSON, mode 0600.
 * Written atomically: temp file → fsync → rename → fsync of the directory, so a crash at any moment leaves
 * either the old or the new checkpoint, never a torn one.
 *
 * Loading never turns a checkpoint it cannot use into a skip: a file from a newer format version is refused
 * (the agent will not run until the operator decides), and an empty, truncated or corrupt one makes the source
 * start from the oldest position it can read — duplicates, never loss — instead of from `start_at`.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ZodType } from "zod";
import { NagareError } from "./errors.ts";
import { syncDirectory } from "./line-files.ts";

const CHECKPOINT_VERSION = 1;

export interface SavedCheckpoint<Position = unknown> {
  version: number;
  source: string;
  type: string;
  saved_at: string;
  position: Position;
}

/** A checkpoint file as `list()` found it: its content, or why it cannot be used (`newer`: a newer format). */
export type ListedCheckpoint = { file: string; source: string; modifiedMs: number } & (
  | { checkpoint: SavedCheckpoint; problem?: undefined }
  | { checkpoint?: undefined; problem: string; newer: boolean }
);

/** What loading a source's checkpoint found. */
export type LoadedCheckpoint<Position = unknown> =
  | { kind: "none" }
  | { kind: "saved"; checkpoint: SavedCheckpoint<Position> }
  /** The file was unusable and moved aside: the source must start from the oldest position it can read. */
  | { kind: "lost"; reason: string; movedTo: string }
  /**
   * The file belongs to a source of another type that had this name (the config changed the type): moved aside,
   * and the new source starts as configured, like any new source.
   */
  | { kind: "other-type"; type: string; movedTo: string };

const TEMP_MARK = ".tmp-";
let tempSeq = 0;

export class CheckpointStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "checkpoints");
  }

  /** Creates the directory (0700); throws a clear error when the data dir is not writable. */
  prepare(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new NagareError("CHECKPOINT_IO", `cannot create the checkpoint directory ${this.dir}`, { cause: err });
    }
    // Temp files of a writer that died between write and rename; the data dir lock says no writer is alive.
    for (const name of readdirSync(this.dir)) if (name.includes(TEMP_MARK)) rmSync(join(this.dir, name), { force: true });
  }

  /**
   * Throws CHECKPOINT_UNSUPPORTED for the first source whose checkpoint a newer nagare wrote. Called before any
   * source starts, so that the agent refuses to run rather than run some sources and not others.
   */
  assertSupported(sources: readonly string[]): void {
    for (const source of sources) {
      const path = this.pathOf(source);
      const version = newerVersionOf(this.readText(path) ?? "");
      if (version !== undefined) throw unsupported(path, source, version);
    }
  }

  /** Removes a source's checkpoint (the operator's way out); false when there was none. */
  reset(source: string): boolean {
    const path = this.pathOf(source);
    const existed = this.readText(path) !== undefined;
    rmSync(path, { force: true });
    return existed;
  }

  /**
   * The saved checkpoint of a source, its position checked against the source's schema. A file of a newer
   * format version throws CHECKPOINT_UNSUPPORTED and is left in place; any other unusable file — not JSON,
   * another source's, a position of the wrong shape or of another source type — is moved aside (kept for
   * inspection) and reported as lost.
   */
  load<Position>(source: string, type: string, schema: ZodType<Position>): LoadedCheckpoint<Position> {
    const path = this.pathOf(source);
    const text = this.readText(path);
    if (text === undefined) return { kind: "none" };
    const version = newerVersionOf(text);
    if (version !== undefined) throw unsupported(path, source, version);
    let reason = checkpointProblem(text, source);
    if (reason === undefined) {
      const saved = JSON.parse(text) as SavedCheckpoint;
      if (typeof saved.type === "string" && saved.type !== type) return { kind: "other-type", type: saved.type, movedTo: this.moveAside(path, `${saved.type}-`) };
      const position = schema.safeParse(saved.position);
      if (position.success) return { kind: "saved", checkpoint: { ...saved, position: position.data } };
      reason = positionProblem(type, position.error.issues);
    }
    return { kind: "lost", reason, movedTo: this.moveAside(path, "corrupt-") };
  }

  /**
   * Every checkpoint file, for `nagare checkpoints`: usable ones with their content, unusable ones with the
   * reason (`positionOf` gives a source type's position schema, to judge positions as `run` would). Throws
   * CHECKPOINT_IO when the directory or a file exists but cannot be read (e.g. permissions): that is not "no
   * checkpoints".
   */
  list(positionOf: (type: string) => ZodType | undefined = () => undefined): ListedCheckpoint[] {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith(".json")).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new NagareError("CHECKPOINT_IO", `cannot read the checkpoint directory ${this.dir}`, { cause: err });
    }
    const listed: ListedCheckpoint[] = [];
    for (const name of names) {
      const file = join(this.dir, name);
      const source = name.slice(0, -".json".length);
      const text = this.readText(file);
      const modifiedMs = statSync(file, { throwIfNoEntry: false })?.mtimeMs;
      // Gone since the directory was read: reset by another command, or moved aside by a starting agent.
      if (text === undefined || modifiedMs === undefined) continue;
      const version = newerVersionOf(text);
      const problem = version !== undefined ? `written by a newer nagare (format version ${version}; this one reads ${CHECKPOINT_VERSION})` : (checkpointProblem(text, source) ?? this.listedPositionProblem(text, positionOf));
      listed.push(problem === undefined ? { file, source, modifiedMs, checkpoint: JSON.parse(text) as SavedCheckpoint } : { file, source, modifiedMs, problem, newer: version !== undefined });
    }
    return listed;
  }

  async save(source: string, type: string, position: unknown): Promise<void> {
    const body: SavedCheckpoint = { version: CHECKPOINT_VERSION, source, type, saved_at: new Date().toISOString(), position };
    const path = this.pathOf(source);
    const temp = `${path}${TEMP_MARK}${process.pid}-${++tempSeq}`;
    try {
      const file = await open(temp, "w", 0o600);
      try {
        await file.writeFile(`${JSON.stringify(body)}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, path);
      await syncDirectory(this.dir);
    } catch (err) {
      await rm(temp, { force: true }).catch(() => {});
      throw new NagareError("CHECKPOINT_IO", `cannot write the checkpoint ${path}`, { cause: err, retryable: true });
    }
  }

  /** Why `run` would not trust the position of a well-formed file: it does not fit its source type's schema. */
  private listedPositionProblem(text: string, positionOf: (type: string) => ZodType | undefined): string | undefined {
    const saved = JSON.parse(text) as SavedCheckpoint;
    const parsed = positionOf(saved.type)?.safeParse(saved.position);
    return parsed === undefined || parsed.success ? undefined : positionProblem(saved.type, parsed.error.issues);
  }

  /** Renames a checkpoint out of the way (kept for inspection); a failure is CHECKPOINT_IO. */
  private moveAside(path: string, why: string): string {
    const movedTo = `${path}.${why}${Date.now()}`;
    try {
      renameSync(path, movedTo);
    } catch (err) {
      throw new NagareError("CHECKPOINT_IO", `cannot move the unusable checkpoint ${path} aside`, { cause: err });
    }
    return movedTo;
  }

  /** The file's text, or undefined when it does not exist. */
  private readText(path: string): string | undefined {
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new NagareError("CHECKPOINT_IO", `cannot read the checkpoint ${path}`, { cause: err });
    }
  }

  pathOf(source: string): string {
    return join(this.dir, `${source}.json`);
  }
}

/**
 * The format version when it is newer than this agent reads, decided by the `version` field alone: a newer
 * format may change anything else, so nothing else is checked first. A file that is not JSON at all is still
 * asked for a leading `"version": N`, the one thing every format version writes first.
 */
function newerVersionOf(text: string): number | undefined {
  let version: unknown;
  try {
    version = (JSON.parse(text) as { version?: unknown } | null)?.version;
  } catch {
    version = /^\s*\{\s*"version"\s*:\s*(\d+)/.exec(text)?.[1];
    if (version !== undefined) version = Number(version);
  }
  return typeof version === "number" && Number.isInteger(version) && version > CHECKPOINT_VERSION ? version : undefined;
}

function unsupported(path: string, source: string, version: number): NagareError {
  return new NagareError(
    "CHECKPOINT_UNSUPPORTED",
    `the checkpoint ${path} was written by a newer nagare (format version ${version}; this one reads ${CHECKPOINT_VERSION}) and is left as it is; run that newer version, or run \`nagare checkpoints --reset ${source}\` to drop it (source ${source} then starts as configured by start_at)`,
  );
}

function positionProblem(type: string, issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return `its position does not fit a ${type} source (${issues.map((i) => `${i.path.map(String).join(".") || "position"}: ${i.message}`).join("; ")})`;
}

function checkpointProblem(text: string, source: string): string | undefined {
  if (text.trim() === "") return "empty";
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return "not valid JSON";
  }
  if (parsed === null || typeof parsed !== "object") return "not a JSON object";
  const c = parsed as Partial<SavedCheckpoint>;
  if (c.version !== CHECKPOINT_VERSION) return `unsupported version ${JSON.stringify(c.version)} (expected ${CHECKPOINT_VERSION})`;
  if (c.source !== source) return `belongs to source ${JSON.stringify(c.source)}`;
  if (!("position" in c)) return "has no position";
  return undefined;
}
