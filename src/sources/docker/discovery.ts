/** Finds container log files matching the include patterns and none of the exclude patterns. */
import { existsSync } from "node:fs";
import { basename, dirname } from "node:path";

const GLOB_CHARS = /[*?[{]/;

export class Discovery {
  private readonly include: { base: string; glob: Bun.Glob }[];
  private readonly exclude: Bun.Glob[];

  constructor(include: readonly string[], exclude: readonly string[]) {
    this.include = include.map((pattern) => {
      const parts = pattern.split("/");
      const firstGlob = parts.findIndex((p) => GLOB_CHARS.test(p));
      const base = firstGlob < 0 ? dirname(pattern) : parts.slice(0, firstGlob).join("/") || "/";
      const rest = firstGlob < 0 ? basename(pattern) : parts.slice(firstGlob).join("/");
      return { base, glob: new Bun.Glob(rest) };
    });
    this.exclude = exclude.map((pattern) => new Bun.Glob(pattern));
  }

  /** Every matching file, as absolute paths. */
  scan(): Set<string> {
    const found = new Set<string>();
    for (const { base, glob } of this.include) {
      if (!existsSync(base)) continue;
      for (const path of glob.scanSync({ cwd: base, absolute: true, onlyFiles: true, followSymlinks: true })) {
        if (!this.exclude.some((e) => e.match(path))) found.add(path);
      }
    }
    return found;
  }
}

/**
 * The stream a log file belongs to: the container id. Docker keeps `<id>/<id>-json.log`; kubelet links
 * `/var/log/containers/<pod>_<ns>_<container>-<id>.log`; under /var/log/pods the container's directory is used.
 */
export function containerIdOf(path: string): string {
  const dir = basename(dirname(path));
  if (/^[0-9a-f]{64}$/.test(dir)) return dir;
  const linked = /-([0-9a-f]{64})\.log$/.exec(basename(path));
  if (linked) return linked[1]!;
  return dirname(path);
}
