/**
 * Sizes and durations as operators write them: a plain number (bytes / milliseconds) or a string with a unit.
 * Sizes take binary (KiB, MiB, GiB) and decimal (KB, MB, GB) units; durations take ms, s, m, h.
 */

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1000, kb: 1000, m: 1000 ** 2, mb: 1000 ** 2, g: 1000 ** 3, gb: 1000 ** 3,
  ki: 1024, kib: 1024, mi: 1024 ** 2, mib: 1024 ** 2, gi: 1024 ** 3, gib: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

const QUANTITY = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;

/**
 * The strings `parseSize` and `parseDuration` accept, as JSON Schema patterns (units are case-insensitive);
 * test/config-schema.test.ts holds them against the parsers for every unit of up to three letters.
 */
export const SIZE_PATTERN = String.raw`^\s*\d+(?:\.\d+)?\s*(?:[bB]|[kKmMgG][iI]?[bB]?)?\s*$`;
export const DURATION_PATTERN = String.raw`^\s*\d+(?:\.\d+)?\s*(?:[mM][sS]?|[sShH])?\s*$`;

/** Bytes for "64MiB", "1.5GB", "512", 512; undefined when the text is not a size. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = QUANTITY.exec(value);
  if (!m) return undefined;
  const unit = SIZE_UNITS[(m[2] ?? "").toLowerCase() || "b"];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Milliseconds for "500ms", "5s", "1.5m", 200; undefined when the text is not a duration. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = QUANTITY.exec(value);
  if (!m) return undefined;
  const unit = DURATION_UNITS[(m[2] ?? "").toLowerCase() || "ms"];
  if (unit === undefined) return undefined;
  return Number(m[1]) * unit;
}
