/**
 * Reads one config text (YAML or JSON), expands environment references, validates it against the schema and
 * turns every problem into one line: `file:line:column: ...` for the syntax, `key.path: ...` for the rest.
 * Fragments (`include`) are assembled by fragments.ts from the pieces here.
 */
import { isAlias, LineCounter, parseDocument, visit, type Document } from "yaml";
import type { z } from "zod";
import { schemas, type Config, type SinkConfig, type SourceConfig } from "./schema.ts";
import { sinkDescriptors, sourceDescriptors } from "../registry.ts";
import { expandEnv, type ExpansionProblem } from "./expand.ts";
import { schemaKeyNames } from "./keys.ts";

export type LoadResult = { ok: true; config: Config } | { ok: false; problems: string[] };

export type Env = Record<string, string | undefined>;

/** The components of a config that are valid on their own, for environment checks of a config that is not. */
export interface Parts {
  data_dir?: string;
  sources: Record<string, SourceConfig>;
  sinks: Record<string, SinkConfig>;
}

/** A parsed and expanded tree, with the problems found on the way (each a line without the file name). */
export interface ExpandedTree {
  tree: Record<string, unknown>;
  problems: string[];
  /** Paths whose strings lost an unset variable: schema complaints about them would only repeat that. */
  expansion: ExpansionProblem[];
}

/** The config text alone: a file it includes is not read (fragments.ts does that). */
export function loadConfigText(text: string, origin: string, env: Env = process.env): LoadResult {
  const parsed = parseConfigText(text, origin);
  if (!parsed.ok) return parsed;
  const expanded = expandTree(parsed.tree, env);
  if (expanded === undefined) return { ok: false, problems: [notAMapping(origin)] };
  const checked = checkMain(expanded);
  return checked.config === undefined ? { ok: false, problems: checked.problems } : { ok: true, config: checked.config };
}

/**
 * YAML (JSON is YAML 1.2 too, and gets positions and duplicate keys that way) to a plain tree. Syntax errors
 * and duplicate keys are reported with their line and column; a duplicate is never resolved by "last wins".
 */
export function parseConfigText(text: string, origin: string): { ok: true; tree: unknown } | { ok: false; problems: string[] } {
  const kind = origin.endsWith(".json") ? "JSON" : "YAML";
  const lines = new LineCounter();
  // merge: `<<` merge keys worked with the parser used before, so configs may rely on them.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return `${origin}:${line}:${col}`;
  };
  const duplicates = doc.errors.filter((e) => e.code === "DUPLICATE_KEY").map((e) => `${at(e.pos[0])}: duplicate key ${JSON.stringify(keyAt(doc, e.pos[0]))}`);
  // After the first syntax error the parser's further complaints are mostly echoes of it.
  const syntax = [...doc.errors.filter((e) => e.code !== "DUPLICATE_KEY"), ...doc.warnings].slice(0, 1).map((e) => `${at(e.pos[0])}: invalid ${kind}: ${e.message}`);
  if (duplicates.length + syntax.length > 0) return { ok: false, problems: [...syntax, ...duplicates] };
  const loop = recursiveAlias(doc);
  if (loop !== undefined) return { ok: false, problems: [`${at(loop.offset)}: invalid ${kind}: the alias *${loop.name} is inside the node it refers to`] };
  let tree: unknown;
  try {
    tree = doc.toJS();
  } catch (err) {
    // An alias without its anchor, or an alias bomb: found only while building the tree.
    const offset = unresolvedAlias(doc);
    return { ok: false, problems: [`${offset === undefined ? origin : at(offset)}: invalid ${kind}: ${(err as Error).message}`] };
  }
  if (kind === "JSON") {
    try {
      JSON.parse(text); // what YAML allows and JSON does not (a trailing comma, a comment)
    } catch (err) {
      return { ok: false, problems: [`${origin}: invalid JSON: ${(err as Error).message.replace(/^JSON Parse error: /, "")}`] };
    }
  }
  return { ok: true, tree };
}

function keyAt(doc: Document, offset: number): string {
  let key = "?";
  visit(doc, {
    Pair(_, pair) {
      const node = pair.key as { range?: [number, number, number]; value?: unknown } | null;
      if (node?.range?.[0] === offset) {
        key = String(node.value ?? node);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return key;
}

function unresolvedAlias(doc: Document): number | undefined {
  const anchors = new Set<string>();
  let found: number | undefined;
  visit(doc, (_, node) => {
    if (isAlias(node)) {
      if (anchors.has(node.source)) return undefined;
      found = node.range?.[0];
      return visit.BREAK;
    }
    const anchor = (node as { anchor?: string } | null)?.anchor;
    if (anchor) anchors.add(anchor);
    return undefined;
  });
  return found;
}

/** An alias inside its own anchor's node would make an endless tree. */
function recursiveAlias(doc: Document): { offset: number; name: string } | undefined {
  let found: { offset: number; name: string } | undefined;
  visit(doc, (_, node, path) => {
    if (!isAlias(node) || !path.some((ancestor) => (ancestor as { anchor?: string }).anchor === node.source)) return undefined;
    found = { offset: node.range?.[0] ?? 0, name: node.source };
    return visit.BREAK;
  });
  return found;
}

export const notAMapping = (origin: string) => `${origin}: the config must be a mapping of keys (data_dir, buffer, sources, sinks, ...)`;

/** `${VAR}` expansion; undefined when the tree is not a mapping. */
export function expandTree(tree: unknown, env: Env): ExpandedTree | undefined {
  if (tree === null || typeof tree !== "object" || Array.isArray(tree)) return undefined;
  const expansion: ExpansionProblem[] = [];
  const expanded = expandEnv(tree, env, expansion) as Record<string, unknown>;
  return { tree: expanded, problems: expansion.map((p) => `${formatPath(p.path)}: ${p.message}`), expansion };
}

/**
 * The main file: every problem at once (unset variables and the schema's complaints about everything else),
 * and the components valid on their own, so environment checks can run on them even when the config is not.
 */
export function checkMain(expanded: ExpandedTree): { problems: string[]; config?: Config; parts: Parts } {
  const result = schemas().config.safeParse(expanded.tree);
  const problems = [...expanded.problems, ...schemaProblems(result.success ? [] : result.error.issues, expanded.expansion)];
  if (result.success && problems.length === 0) return { problems, config: result.data, parts: result.data };
  const dataDir = expanded.tree.data_dir;
  return { problems, parts: { ...validParts(expanded.tree), ...(typeof dataDir === "string" && dataDir !== "" ? { data_dir: dataDir } : {}) } };
}

/** The sources and sinks of a tree that pass their own schema. */
export function validParts(tree: Record<string, unknown>): Pick<Parts, "sources" | "sinks"> {
  const parts: Pick<Parts, "sources" | "sinks"> = { sources: {}, sinks: {} };
  for (const [name, entry] of entriesOf(tree.sources)) {
    const parsed = schemas().source.safeParse(entry);
    if (parsed.success) parts.sources[name] = parsed.data;
  }
  for (const [name, entry] of entriesOf(tree.sinks)) {
    const parsed = schemas().sink.safeParse(entry);
    if (parsed.success) parts.sinks[name] = parsed.data;
  }
  return parts;
}

export function entriesOf(value: unknown): [string, unknown][] {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? Object.entries(value) : [];
}

/** Schema issues as lines, leaving out those about a value an unset variable already emptied. */
export function schemaProblems(issues: readonly z.core.$ZodIssue[], expansion: readonly ExpansionProblem[] = []): string[] {
  const emptied = expansion.map((p) => formatPath(p.path));
  const lines = issues.flatMap(describeIssue).filter((line) => !emptied.some((path) => line.startsWith(`${path}: `) || line.startsWith(`${path}.`) || line.startsWith(`${path}[`)));
  return [...new Set(lines)];
}

/** The schema alone, on a tree already parsed and expanded. */
export function validateConfig(tree: unknown): LoadResult {
  const result = schemas().config.safeParse(tree);
  if (result.success) return { ok: true, config: result.data };
  return { ok: false, problems: schemaProblems(result.error.issues) };
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
        const types = (issue.path[0] === "sinks" ? sinkDescriptors() : sourceDescriptors()).map((d) => d.type);
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

function formatPath(path: readonly PropertyKey[]): string {
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
