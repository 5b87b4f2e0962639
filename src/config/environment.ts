/**
 * Checks of a config against the machine it is validated on: files that must exist or be writable, programs
 * that must be there. These are not mistakes in the config: the machine may still change (a directory created,
 * a group joined, a package installed), so `nagare validate` reports them apart from config problems (exit 69,
 * not 78) and `nagare run` starts anyway and retries. They run on whatever part of a config is valid, so one
 * `validate` shows them next to the config's own problems. What each component needs, its descriptor says.
 */
import { nearestExisting, writeProblem } from "./blocks/environment.ts";
import type { Parts } from "./load.ts";
import { sinkDescriptor, sourceDescriptor } from "../registry.ts";

export function environmentProblems(config: Parts): string[] {
  const problems: string[] = [];
  if (config.data_dir !== undefined) {
    const problem = writeProblem(nearestExisting(config.data_dir), "data_dir");
    if (problem !== undefined) problems.push(problem);
  }
  for (const [name, source] of Object.entries(config.sources)) {
    problems.push(...(sourceDescriptor(source.type)?.environment?.(source as never, `sources.${name}`) ?? []));
  }
  for (const [name, sink] of Object.entries(config.sinks)) {
    problems.push(...(sinkDescriptor(sink.type)?.environment?.(sink as never, `sinks.${name}`) ?? []));
  }
  return problems;
}
