/** Glob patterns of paths, split where scanning has to start: shared by the Docker source and config `include`. */
import { basename, dirname } from "node:path";

const GLOB_CHARS = /[*?[{]/;

/** A pattern's fixed directory (the part before the first glob character) and the glob relative to it. */
export function splitPattern(pattern: string): { base: string; rest: string } {
  const parts = pattern.split("/");
  const firstGlob = parts.findIndex((p) => GLOB_CHARS.test(p));
  if (firstGlob < 0) return { base: dirname(pattern), rest: basename(pattern) };
  return { base: parts.slice(0, firstGlob).join("/") || "/", rest: parts.slice(firstGlob).join("/") };
}
