/**
 * The checks a component's `environment()` makes of this machine, worded alike for every component: each returns
 * the problem as a line (`key: what path (code)`) or undefined. Reading is checked by opening (capabilities
 * count); writing by access(2), since the agent holds no capability that lets it write where its uid may not.
 */
import { accessSync, constants, statSync } from "node:fs";
import { dirname } from "node:path";
import { exists, unreadable } from "../../core/fs-access.ts";

export function readProblem(path: string, key: string, what: string): string | undefined {
  const code = unreadable(path);
  return code === undefined ? undefined : `${key}: ${what} ${path} (${code})`;
}

export function writeProblem(path: string, key: string): string | undefined {
  try {
    accessSync(path, constants.W_OK);
    return undefined;
  } catch (err) {
    return `${key}: cannot write to ${path} (${(err as NodeJS.ErrnoException).code ?? "inaccessible"})`;
  }
}

/** A path that may not exist yet is judged by its nearest existing ancestor: that is where it would be created. */
export function nearestExisting(path: string): string {
  return exists(path) || dirname(path) === path ? path : nearestExisting(dirname(path));
}

/** A directory that does not exist yet is fine (it may be created later); one that cannot be read, or a file, is not. */
export function directoryProblem(path: string, key: string): string | undefined {
  const existing = nearestExisting(path);
  if (!statSync(existing).isDirectory()) return `${key}: ${existing} is not a directory`;
  return readProblem(existing, key, "cannot read the directory");
}

/** A bare name is looked up on PATH as the agent will run it; a path is checked where it points. */
export function programProblem(program: string, key: string): string | undefined {
  const problem = programState(program);
  return problem === undefined ? undefined : `${key}: ${problem}`;
}

function programState(program: string): string | undefined {
  if (!program.includes("/")) return Bun.which(program) === null ? `program ${program} not found on PATH` : undefined;
  if (!exists(program)) return `program ${program} not found`;
  try {
    if (statSync(program).isDirectory()) return `program ${program} is a directory, not a program`;
    accessSync(program, constants.X_OK);
    return undefined;
  } catch (err) {
    return `program ${program} is not executable (${(err as NodeJS.ErrnoException).code ?? "inaccessible"})`;
  }
}

/** Drops the checks that passed. */
export function problems(...lines: (string | undefined)[]): string[] {
  return lines.filter((line): line is string => line !== undefined);
}
