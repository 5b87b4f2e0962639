/**
 * Finds container log files matching the include patterns and none of the exclude patterns. Each pattern's fixed
 * base directory (e.g. /var/lib/docker/containers) is watched for new entries, so a new container is found
 * within a moment; the periodic rescan stays the fallback for what events miss. Only the base is watched, not
 * the container directories, because every write to a log file would be an event there.
 */
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { exists } from "./files.ts";
import { splitPattern } from "../../core/glob.ts";

export { splitPattern };

/** What the last scan found for one include pattern. */
export interface PatternScan {
  pattern: string;
  /** Its fixed directory (the part before the first glob character). */
  base: string;
  /** Files it matched and no exclude pattern left out. */
  matched: number;
  /** The base directory does not exist (yet). */
  missing: boolean;
  /**
   * A directory under the pattern the agent may not list, with the error: the scan of this pattern stopped
   * there, so files after it in the listing were not seen this time.
   */
  unreadable?: { path: string; code: string };
}

export class Discovery {
  private readonly include: { pattern: string; base: string; glob: Bun.Glob }[];
  private readonly exclude: Bun.Glob[];
  private readonly watchers = new Map<string, FSWatcher>();
  /** An entry appeared in (or left) a base directory since the last look. */
  private changed = false;
  /** Per include pattern, what the last scan found. */
  patterns: PatternScan[] = [];

  constructor(include: readonly string[], exclude: readonly string[]) {
    this.include = include.map((pattern) => {
      const { base, rest } = splitPattern(pattern);
      return { pattern, base, glob: new Bun.Glob(rest) };
    });
    this.exclude = exclude.map((pattern) => new Bun.Glob(pattern));
  }

  /** Every matching file, as absolute paths. Also (re)starts watching the base directories that exist now. */
  scan(): Set<string> {
    const found = new Set<string>();
    this.patterns = this.include.map(({ pattern, base, glob }): PatternScan => {
      if (!exists(base)) return { pattern, base, matched: 0, missing: true };
      this.watchBase(base);
      let matched = 0;
      try {
        for (const path of glob.scanSync({ cwd: base, absolute: true, onlyFiles: true, followSymlinks: true })) {
          if (this.exclude.some((e) => e.match(path))) continue;
          found.add(path);
          matched++;
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        return { pattern, base, matched, missing: false, unreadable: { path: e.path ?? base, code: e.code ?? "inaccessible" } };
      }
      return { pattern, base, matched, missing: false };
    });
    return found;
  }

  /** The last scan saw every directory it looked into (none was unreadable). */
  get complete(): boolean {
    return this.patterns.every((p) => p.unreadable === undefined);
  }

  /**
   * Whether a base directory saw an entry appear or go since the last call. dockerd creates a container's
   * directory before its log file, so after an event the caller keeps rescanning often for a short while.
   */
  takeChanged(): boolean {
    const changed = this.changed;
    this.changed = false;
    return changed;
  }

  close(): void {
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  private watchBase(base: string): void {
    if (this.watchers.has(base)) return;
    try {
      const watcher = watch(base, { persistent: false }, (event) => {
        if (event === "rename") this.changed = true;
      });
      // A base directory removed or unreadable: drop the watcher; the next scan watches it again if it is back.
      watcher.on("error", () => {
        watcher.close();
        this.watchers.delete(base);
      });
      this.watchers.set(base, watcher);
    } catch {
      // Not watchable (no inotify instances left, permissions): the periodic rescan finds new files.
    }
  }
}

/**
 * The stream a log file belongs to: the container id where the layout names it — Docker keeps
 * `<id>/<id>-json.log`; kubelet links `/var/log/containers/<pod>_<ns>_<container>-<id>.log` — else the file's
 * path (under /var/log/pods a container directory holds one file per restart, `0.log`, `1.log`, each a stream
 * of its own, since each has its own position).
 */
export function containerIdOf(path: string): string {
  const dir = basename(dirname(path));
  if (/^[0-9a-f]{64}$/.test(dir)) return dir;
  const linked = /-([0-9a-f]{64})\.log$/.exec(basename(path));
  if (linked) return linked[1]!;
  return path;
}
