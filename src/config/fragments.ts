/**
 * Config fragments: the main file's `include` globs name files that add `sources` and `sinks` (one per team, say,
 * in /etc/nagare/conf.d). Global settings stay in the main file. Each fragment is checked on its own, so a broken
 * one is refused alone while the main file and the other fragments run:
 *
 * - a fragment holds only `sources` and `sinks`; its sinks read its own sources and those of the main file (never
 *   another fragment's: one team's change cannot break another team's routes); each of its sources is read by one
 *   of its own sinks;
 * - names are unique across all files; a clash refuses the later file in sorted path order, except that on a
 *   reload the files that did not change keep their names, so adding a name cannot take down a running team;
 * - on a reload, a fragment that became broken keeps its previous version running;
 * - a source of the main file that no running sink reads is not started (with fragments, its readers may all
 *   have been refused); it reads on from its saved position once one does.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { componentName } from "./blocks/types.ts";
import { schemas, type Config, type SinkConfig, type SourceConfig } from "./schema.ts";
import { checkMain, entriesOf, expandTree, notAMapping, parseConfigText, schemaProblems, validParts, type Env, type LoadResult, type Parts } from "./load.ts";
import { exists } from "../core/fs-access.ts";
import { splitPattern } from "../core/glob.ts";

/** What runs of one fragment file. */
export interface Fragment {
  file: string;
  sources: Record<string, SourceConfig>;
  sinks: Record<string, SinkConfig>;
}

/** One file's verdict. */
export interface FileReport {
  file: string;
  /** Config problems, one line each; lines without a `file:` prefix are about this file. Empty: accepted. */
  problems: string[];
  /** Its components that are valid on their own, for environment checks. */
  parts: Parts;
  /** Refused, and its previous version keeps running (reloads only). */
  kept?: boolean;
}

/** The main file and its fragments, checked and put together. */
export interface Assembly {
  main: FileReport;
  /** Whether the main file has `include`: its lines then name their file, as there are several. */
  includes: boolean;
  /** Every file the globs matched, in sorted path order. */
  fragments: FileReport[];
  /** `include` patterns that matched no file. */
  unmatched: string[];
  /** What runs of each fragment file (a refused one may keep its previous version). */
  accepted: Map<string, Fragment>;
  /** Main-file sources that no running sink reads: they are not started. */
  idle: string[];
  /** Main file and accepted fragments together; undefined when the main file is refused. */
  config?: Config;
}

/** What a fragment may hold, built like the config schema from the registered component types. */
function fragmentSchema() {
  const { source, sink } = schemas();
  return z.strictObject({ sources: z.record(componentName, source).default({}), sinks: z.record(componentName, sink).default({}) });
}

const GLOBAL_KEYS = new Set(Object.keys(schemas().config.shape).filter((key) => key !== "sources" && key !== "sinks"));

const assemblies = new WeakMap<Config, Assembly>();

/** The assembly a config came from (the CLI hands the agent only the config). */
export function assemblyOf(config: Config): Assembly | undefined {
  return assemblies.get(config);
}

/** A config file and its fragments; `previous` (reloads) is what ran of each fragment so far. */
export function loadConfigFile(path: string, env: Env = process.env, previous?: ReadonlyMap<string, Fragment>): LoadResult {
  const assembly = assemble(path, env, previous);
  if (assembly.config === undefined) return { ok: false, problems: configLines(assembly) };
  assemblies.set(assembly.config, assembly);
  return { ok: true, config: assembly.config };
}

/** Every config problem of the main file and its fragments, one line each, naming the file when there are several. */
export function configLines(assembly: Assembly): string[] {
  return [assembly.main, ...assembly.fragments].flatMap((report) => linesOf(report, assembly.includes || report !== assembly.main));
}

/** A report's lines, each starting with its file when `withFile`. */
export function linesOf(report: FileReport, withFile: boolean, lines: string[] = report.problems): string[] {
  return lines.map((line) => (!withFile || line.startsWith(`${report.file}:`) ? line : `${report.file}: ${line}`));
}

/** `text`: the main file's content when it is not read from `path` (the embedded default). */
export function assemble(path: string, env: Env = process.env, previous: ReadonlyMap<string, Fragment> = new Map(), text?: string): Assembly {
  const main = checkMainFile(path, env, text);
  const includes = main.include !== undefined;
  const matched = main.include !== undefined ? matchIncludes(path, main.include) : { files: [], unmatched: [], problems: [] };
  main.report.problems.push(...matched.problems);
  const checked = matched.files.map((file) => checkFragment(file, env, path));
  const accepted = claim(main, checked, previous);
  const assembly: Assembly = { main: main.report, includes, fragments: checked.map((c) => c.report), unmatched: matched.unmatched, accepted, idle: [] };
  if (main.config !== undefined && main.report.problems.length === 0) {
    const config: Config = { ...main.config, sources: { ...main.config.sources }, sinks: { ...main.config.sinks } };
    for (const fragment of accepted.values()) {
      Object.assign(config.sources, fragment.sources);
      Object.assign(config.sinks, fragment.sinks);
    }
    const read = new Set(Object.values(config.sinks).flatMap((sink) => sink.inputs));
    assembly.idle = Object.keys(main.config.sources).filter((name) => !read.has(name));
    for (const name of assembly.idle) delete config.sources[name];
    assembly.config = config;
  }
  return assembly;
}

interface MainFile {
  report: FileReport;
  config?: Config;
  include?: string[];
  /** Its source names, as far as they can be told (also from a main file that is refused). */
  sourceNames: Set<string>;
}

function checkMainFile(path: string, env: Env, text: string | undefined): MainFile {
  const report: FileReport = { file: path, problems: [], parts: { sources: {}, sinks: {} } };
  const read = text === undefined ? readConfig(path, "cannot read the config file") : { ok: true as const, text };
  if (!read.ok) return { report: { ...report, problems: read.problems }, sourceNames: new Set() };
  const parsed = parseConfigText(read.text, path);
  if (!parsed.ok) return { report: { ...report, problems: parsed.problems }, sourceNames: new Set() };
  const expanded = expandTree(parsed.tree, env);
  if (expanded === undefined) return { report: { ...report, problems: [notAMapping(path)] }, sourceNames: new Set() };
  const checked = checkMain(expanded);
  const include = expanded.tree.include;
  return {
    report: { ...report, problems: checked.problems, parts: checked.parts },
    config: checked.config,
    include: Array.isArray(include) ? include.filter((p): p is string => typeof p === "string" && p !== "") : undefined,
    sourceNames: new Set(checked.config ? Object.keys(checked.config.sources) : entriesOf(expanded.tree.sources).map(([name]) => name)),
  };
}

function readConfig(path: string, what: string): { ok: true; text: string } | { ok: false; problems: string[] } {
  try {
    return { ok: true, text: readFileSync(path, "utf8") };
  } catch (err) {
    return { ok: false, problems: [`${path}: ${what} (${(err as NodeJS.ErrnoException).code ?? String(err)})`] };
  }
}

/** The files the patterns match, sorted and without repeats; relative patterns start at the main file's directory. */
function matchIncludes(mainPath: string, patterns: string[]): { files: string[]; unmatched: string[]; problems: string[] } {
  const files = new Set<string>();
  const unmatched: string[] = [];
  const problems: string[] = [];
  const self = resolve(mainPath);
  patterns.forEach((pattern, i) => {
    const absolute = isAbsolute(pattern) ? pattern : resolve(dirname(self), pattern);
    const { base, rest } = splitPattern(absolute);
    let found = 0;
    try {
      if (exists(base)) {
        for (const file of new Bun.Glob(rest).scanSync({ cwd: base, absolute: true, onlyFiles: true, followSymlinks: true })) {
          if (file === self) continue;
          files.add(file);
          found++;
        }
      }
    } catch (err) {
      // Which fragments exist cannot be told: running on without them would stop teams' pipelines for nothing.
      problems.push(`include[${i}]: cannot list ${base} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      return;
    }
    if (found === 0) unmatched.push(pattern);
  });
  return { files: [...files].sort(), unmatched, problems };
}

interface CheckedFragment {
  report: FileReport;
  /** The fragment as it would run, when it is valid on its own. */
  fragment?: Fragment;
}

/** A fragment on its own: syntax, variables, its keys and components, and that its own sources are read. */
function checkFragment(file: string, env: Env, mainPath: string): CheckedFragment {
  const report: FileReport = { file, problems: [], parts: { sources: {}, sinks: {} } };
  const read = readConfig(file, "cannot read the fragment");
  if (!read.ok) return { report: { ...report, problems: read.problems } };
  const parsed = parseConfigText(read.text, file);
  if (!parsed.ok) return { report: { ...report, problems: parsed.problems } };
  if (parsed.tree === null) return { report, fragment: { file, sources: {}, sinks: {} } }; // an empty file adds nothing
  const expanded = expandTree(parsed.tree, env);
  if (expanded === undefined) return { report: { ...report, problems: [`${file}: a fragment must be a mapping with \`sources\` and \`sinks\``] } };
  const own: Record<string, unknown> = {};
  const problems = [...expanded.problems];
  for (const [key, value] of Object.entries(expanded.tree)) {
    if (GLOBAL_KEYS.has(key)) problems.push(`${key}: a global setting, which only the main config file (${mainPath}) may set`);
    else own[key] = value;
  }
  const result = fragmentSchema().safeParse(own);
  problems.push(...schemaProblems(result.success ? [] : result.error.issues, expanded.expansion));
  report.parts = result.success ? { sources: result.data.sources, sinks: result.data.sinks } : validParts(expanded.tree);
  // Inputs as written, so that a sink broken otherwise still counts as a reader.
  const readers = new Set(entriesOf(expanded.tree.sinks).flatMap(([, sink]) => inputsOf(sink)));
  for (const name of Object.keys(report.parts.sources)) {
    if (!readers.has(name)) problems.push(`sources.${name}: no sink of this file reads this source (a fragment's sources are read by its own sinks)`);
  }
  report.problems = problems;
  return problems.length === 0 && result.success ? { report, fragment: { file, ...result.data } } : { report };
}

function inputsOf(sink: unknown): unknown[] {
  const inputs = (sink as { inputs?: unknown } | null)?.inputs;
  return Array.isArray(inputs) ? inputs : [];
}

/**
 * Names and routes across files. Fragments that did not change since the last load claim their names first,
 * then the others in sorted path order; a fragment whose new version is refused falls back to its previous one.
 */
function claim(main: MainFile, checked: CheckedFragment[], previous: ReadonlyMap<string, Fragment>): Map<string, Fragment> {
  const sources = new Map<string, string>([...main.sourceNames].map((name) => [name, main.report.file]));
  const sinks = new Map<string, string>(Object.keys(main.report.parts.sinks).map((name) => [name, main.report.file]));
  const owners = new Map<string, string>(); // every fragment source name, for a clearer message
  for (const c of checked) for (const name of Object.keys(c.fragment?.sources ?? {})) if (!owners.has(name)) owners.set(name, c.report.file);
  const unchanged = (c: CheckedFragment) => c.fragment !== undefined && same(c.fragment, previous.get(c.report.file));
  const order = [...checked.filter(unchanged), ...checked.filter((c) => !unchanged(c))];
  const accepted = new Map<string, Fragment>();
  for (const c of order) {
    // A fragment broken on its own is also checked as far as it goes, so one `validate` lists all its problems.
    c.report.problems.push(...conflicts(c.fragment ?? { file: c.report.file, ...c.report.parts }, main, sources, sinks, owners));
    const old = previous.get(c.report.file);
    const runs = c.report.problems.length === 0 ? c.fragment : old !== undefined && conflicts(old, main, sources, sinks, owners).length === 0 ? old : undefined;
    if (runs === undefined) continue;
    c.report.kept = runs === old && c.report.problems.length > 0;
    accepted.set(c.report.file, runs);
    for (const name of Object.keys(runs.sources)) sources.set(name, runs.file);
    for (const name of Object.keys(runs.sinks)) sinks.set(name, runs.file);
  }
  return new Map([...accepted].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** What keeps a fragment from running next to the files that claimed their names before it. */
function conflicts(fragment: Fragment, main: MainFile, sources: Map<string, string>, sinks: Map<string, string>, owners: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [kind, names, taken] of [["source", fragment.sources, sources], ["sink", fragment.sinks, sinks]] as const) {
    for (const name of Object.keys(names)) {
      const owner = taken.get(name);
      if (owner !== undefined && owner !== fragment.file) {
        problems.push(`${kind}s.${name}: the name "${name}" is taken by a ${kind} of ${owner}; names must be unique across the main file and its fragments`);
      }
    }
  }
  for (const [sinkName, sink] of Object.entries(fragment.sinks)) {
    sink.inputs.forEach((input, i) => {
      if (input in fragment.sources || main.sourceNames.has(input)) return;
      const at = `sinks.${sinkName}.inputs[${i}]`;
      const owner = owners.get(input);
      if (owner !== undefined && owner !== fragment.file) {
        problems.push(`${at}: source "${input}" belongs to ${owner}; a fragment's sinks read only its own sources and those of the main file`);
      } else {
        const known = [...Object.keys(fragment.sources), ...main.sourceNames].join(", ") || "none";
        problems.push(`${at}: unknown source "${input}" (sources of this file and of the main file: ${known})`);
      }
    });
  }
  return problems;
}

const same = (a: Fragment, b: Fragment | undefined) =>
  b !== undefined && JSON.stringify([a.sources, a.sinks]) === JSON.stringify([b.sources, b.sinks]);
