/**
 * Reads a config file (YAML or JSON), expands environment references, validates it against the schema and
 * turns every problem into one line `key.path: what was expected`.
 */
import { readFileSync } from "node:fs";
import type { z } from "zod";
import { configSchema, SINK_TYPES, SOURCE_TYPES, type Config } from "./schema.ts";
import { expandEnv, type ExpansionProblem } from "./expand.ts";
import { schemaKeyNames } from "./keys.ts";

export type LoadResult = { ok: true; config: Config } | { ok: false; problems: string[] };

export function loadConfigFile(path: string, env: Record<string, string | undefined> = process.env): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    return { ok: false, problems: [`${path}: cannot read the config file (${code || String(err)})`] };
  }
  return loadConfigText(text, path, env);
}

export function loadConfigText(text: string, origin: string, env: Record<string, string | undefined> = process.env): LoadResult {
  let tree: unknown;
  try {
    tree = origin.endsWith(".json") ? JSON.parse(text) : Bun.YAML.parse(text);
  } catch (err) {
    const kind = origin.endsWith(".json") ? "JSON" : "YAML";
    return { ok: false, problems: [`${origin}: invalid ${kind}: ${(err as Error).message.replace(/^YAML Parse error: /, "")}`] };
  }
  if (tree === null || typeof tree !== "object" || Array.isArray(tree)) {
    return { ok: false, problems: [`${origin}: the config must be a mapping of keys (data_dir, buffer, sources, sinks, ...)`] };
  }
  const expansion: ExpansionProblem[] = [];
  const expanded = expandEnv(tree, env, expansion);
  if (expansion.length > 0) return { ok: false, problems: expansion.map((p) => `${formatPath(p.path)}: ${p.message}`) };
  return validateConfig(expanded);
}

export function validateConfig(tree: unknown): LoadResult {
  const result = configSchema.safeParse(tree);
  if (result.success) return { ok: true, config: result.data };
  const lines = result.error.issues.flatMap(describeIssue);
  return { ok: false, problems: [...new Set(lines)] };
}

function describeIssue(issue: z.core.$ZodIssue): string[] {
  const at = formatPath(issue.path);
  switch (issue.code) {
    case "unrecognized_keys":
      return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown key${suggestion(key)}`);
    case "invalid_type":
      if (/received undefined$/.test(issue.message)) return [`${at}: required`];
      return [`${at}: expected ${issue.expected}${received(issue.message)}`];
    case "invalid_value":
      return [`${at}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`];
    case "invalid_union": {
      const note = (issue as { note?: string }).note;
      if (note === "No matching discriminator") {
        const types = issue.path[0] === "sinks" ? SINK_TYPES : SOURCE_TYPES;
        return [`${at}: expected one of ${types.map((t) => JSON.stringify(t)).join(", ")}`];
      }
      return [`${at}: ${issue.message}`];
    }
    case "too_small":
      if (issue.origin === "array") return [`${at}: needs at least ${issue.minimum} item(s)`];
      if (issue.origin === "string") return [`${at}: must not be empty`];
      return [`${at}: must be at least ${issue.minimum}`];
    default:
      return [`${at}: ${issue.message}`];
  }
}

/** Zod says what it got at the end of its message ("..., received string"). */
function received(message: string): string {
  const got = /received (\w+)$/.exec(message)?.[1];
  return got === undefined ? "" : ` (got ${got === "object" ? "a mapping" : got === "array" ? "a list" : `a ${got}`})`;
}

export function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(top level)";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join("");
}

function suggestion(key: string): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const known of schemaKeyNames()) {
    const d = editDistance(key, known);
    if (d < bestDistance) [best, bestDistance] = [known, d];
  }
  return best === undefined ? "" : ` (did you mean "${best}"?)`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}
