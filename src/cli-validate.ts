/**
 * `nagare validate [--connect]`: every problem of a config in one run, one line each on stderr: the config's own
 * (syntax, unset variables, schema, cross-checks, per fragment) and the environment's (files, directories and
 * programs on this machine; with --connect, the destinations), the latter also for the parts of a config that
 * are valid while others are not. With fragments every line starts with its file.
 *
 * Exit status: 78 (EX_CONFIG) when any file has a config problem: `run` refuses a broken main file with the same
 * lines, and runs without a broken fragment. Else 69 (EX_UNAVAILABLE) when only the environment is not ready:
 * that may heal, and `run` starts anyway and keeps trying. Else 0. The summary on stdout claims only what was
 * checked.
 */
import type { ConfigOrigin } from "./config/origin.ts";
import { probeConfig, type ProbeResult } from "./config/connect.ts";
import { environmentProblems } from "./config/environment.ts";
import { configLines, linesOf, type Assembly, type FileReport } from "./config/fragments.ts";
import { EX_CONFIG, EX_UNAVAILABLE } from "./exit-codes.ts";

/** Writes the report; returns the exit status. */
export async function validateCommand(origin: ConfigOrigin, connect: boolean): Promise<number> {
  const assembly = origin.check();
  const files = [assembly.main, ...assembly.fragments];
  const config = configLines(assembly);
  const environment = files.flatMap((report) => linesOf(report, assembly.includes || report !== assembly.main, environmentProblems(report.parts)));
  const probes = connect ? (await Promise.all(files.map((report) => probe(report, assembly)))).flat() : [];
  // A server that answers but refuses this sink's settings (forward without the shared_key it requires) is a
  // config problem; one that does not answer is the environment's.
  const refusedBy = probes.filter((p) => p.refused === true);
  const unreachable = probes.filter((p) => !p.ok && !refusedBy.includes(p));
  for (const line of [...config, ...refusedBy.map((p) => p.line), ...environment, ...unreachable.map((p) => p.line)]) process.stderr.write(`${line}\n`);
  for (const probe of probes.filter((p) => p.ok)) process.stdout.write(`${probe.line}\n`);
  for (const line of notes(assembly)) process.stdout.write(`${line}\n`);
  const summary = summarize(origin.origin, assembly, { config: config.length + refusedBy.length, environment: environment.length + unreachable.length }, probes);
  if (summary !== undefined) process.stdout.write(`${summary}\n`);
  if (config.length + refusedBy.length > 0) return EX_CONFIG;
  return environment.length + unreachable.length > 0 ? EX_UNAVAILABLE : 0;
}

/** The destinations of a file's components that are valid on their own, each line naming the file when there are several. */
async function probe(report: FileReport, assembly: Assembly): Promise<ProbeResult[]> {
  const results = await probeConfig(report.parts);
  const withFile = assembly.includes || report !== assembly.main;
  return results.map((r) => ({ ...r, line: linesOf(report, withFile, [r.line])[0]! }));
}

/** Facts worth knowing that are not problems. */
function notes(assembly: Assembly): string[] {
  const main = assembly.main.file;
  return [
    ...assembly.unmatched.map((pattern) => `${main}: include pattern ${JSON.stringify(pattern)} matches no file`),
    ...assembly.idle.map((name) => `${main}: sources.${name}: no sink reads this source, so \`nagare run\` does not start it`),
  ];
}

function summarize(origin: string, assembly: Assembly, problems: { config: number; environment: number }, probes: ProbeResult[]): string | undefined {
  const mainRefused = assembly.main.problems.length > 0;
  if (mainRefused) return undefined; // nothing in it can be vouched for; the lines say why
  const refused = assembly.fragments.filter((f) => f.problems.length > 0);
  const counts = count(assembly);
  if (refused.length > 0) {
    return `${origin}: ${refused.length} of ${assembly.fragments.length} fragment(s) refused (${refused.map((f) => f.file).join(", ")}); \`nagare run\` runs the main file and the other fragments (${counts})`;
  }
  if (problems.config > 0) return undefined;
  if (problems.environment > 0) return `${origin}: the config is valid (${counts}), but the environment is not ready (${problems.environment} problem(s))`;
  const reached = probes.length > 0 ? `; ${probes.length} destination(s) answered` : "";
  return `${origin}: valid (${counts})${reached}`;
}

function count(assembly: Assembly): string {
  const config = assembly.config;
  const sources = config === undefined ? 0 : Object.keys(config.sources).length;
  const sinks = config === undefined ? 0 : Object.keys(config.sinks).length;
  const fragments = assembly.includes ? ` from the main file and ${assembly.accepted.size} fragment(s)` : "";
  return `${sources} source(s), ${sinks} sink(s)${fragments}`;
}
