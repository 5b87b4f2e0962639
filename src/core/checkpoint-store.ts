/**
 * One checkpoint file per source in `<data_dir>/checkpoints/<source>.json`, versioned JSON, mode 0600.
 * Written atomically: temp file → fsync → rename → fsync of the directory, so a crash at any moment leaves
 * either the old or the new checkpoint, never a torn one.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { open, rename } from "node:fs/promises";
import { join } from "node:path";
import { NagareError } from "./errors.ts";

export const CHECKPOINT_VERSION = 1;

export interface SavedCheckpoint {
  version: number;
  source: string;
  type: string;
  saved_at: string;
  position: unknown;
}

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
  }

  /**
   * The saved checkpoint of a source, or undefined when there is none. A file that cannot be parsed is moved
   * aside (kept for inspection) and reported through `onCorrupt`; the source then starts as if new.
   */
  load(source: string, onCorrupt: (path: string, movedTo: string, reason: string) => void): SavedCheckpoint | undefined {
    const path = this.pathOf(source);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new NagareError("CHECKPOINT_IO", `cannot read the checkpoint ${path}`, { cause: err });
    }
    const reason = checkpointProblem(text, source);
    if (reason === undefined) return JSON.parse(text) as SavedCheckpoint;
    const movedTo = `${path}.corrupt-${Date.now()}`;
    renameSync(path, movedTo);
    onCorrupt(path, movedTo, reason);
    return undefined;
  }

  /** Every saved checkpoint, for `nagare checkpoints`. */
  list(): { file: string; checkpoint: SavedCheckpoint | undefined; problem?: string }[] {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith(".json")).sort();
    } catch {
      return [];
    }
    return names.map((name) => {
      const file = join(this.dir, name);
      const text = readFileSync(file, "utf8");
      const problem = checkpointProblem(text, name.slice(0, -".json".length));
      return problem === undefined ? { file, checkpoint: JSON.parse(text) as SavedCheckpoint } : { file, checkpoint: undefined, problem };
    });
  }

  async save(source: string, type: string, position: unknown): Promise<void> {
    const body: SavedCheckpoint = { version: CHECKPOINT_VERSION, source, type, saved_at: new Date().toISOString(), position };
    const path = this.pathOf(source);
    const temp = `${path}.tmp`;
    try {
      const file = await open(temp, "w", 0o600);
      try {
        await file.writeFile(`${JSON.stringify(body)}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, path);
      const dir = await open(this.dir, "r");
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      throw new NagareError("CHECKPOINT_IO", `cannot write the checkpoint ${path}`, { cause: err, retryable: true });
    }
  }

  pathOf(source: string): string {
    return join(this.dir, `${source}.json`);
  }
}

function checkpointProblem(text: string, source: string): string | undefined {
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
