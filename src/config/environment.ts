/**
 * Checks of a config against the machine it is validated on: files that must exist or be writable, programs
 * that must be there. These are not mistakes in the config: the machine may still change (a directory created,
 * a group joined, a package installed), so `nagare validate` reports them apart from config problems (exit 69,
 * not 78) and `nagare run` starts anyway and retries. They run on whatever part of a config is valid, so one
 * `validate` shows them next to the config's own problems.
 */
import { accessSync, constants, statSync } from "node:fs";
import { exists, unreadable } from "../core/fs-access.ts";
import { dirname } from "node:path";
import type { Parts } from "./load.ts";
import { splitPattern } from "../sources/docker/discovery.ts";

export function environmentProblems(config: Parts): string[] {
  const problems: string[] = [];
  const check = (path: string, key: string, mode: number, what: string) => {
    try {
      accessSync(path, mode);
    } catch (err) {
      problems.push(`${key}: ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? "inaccessible"})`);
    }
  };
  // Reading is checked by opening (capabilities count); writing by access(2), since the agent holds no
  // capability that lets it write where its uid may not.
  const readCheck = (path: string, key: string, what: string) => {
    const code = unreadable(path);
    if (code !== undefined) problems.push(`${key}: ${what} ${path} (${code})`);
  };
  const nearestExisting = (path: string): string => (exists(path) || dirname(path) === path ? path : nearestExisting(dirname(path)));
  if (config.data_dir !== undefined) check(nearestExisting(config.data_dir), "data_dir", constants.W_OK, "cannot write to");
  for (const [name, source] of Object.entries(config.sources)) {
    const at = `sources.${name}`;
    if (source.type === "docker") {
      // A directory that does not exist yet is fine (dockerd not started yet); one the agent cannot read is not.
      source.include.forEach((pattern, i) => {
        const { base } = splitPattern(pattern);
        const existing = nearestExisting(base);
        if (!statSync(existing).isDirectory()) problems.push(`${at}.include[${i}]: ${existing} is not a directory`);
        else readCheck(existing, `${at}.include[${i}]`, "cannot read the directory");
      });
      continue;
    }
    if (source.type !== "journald") continue;
    if (source.file !== undefined) readCheck(source.file, `${at}.file`, "cannot read");
    else if (source.url === undefined) {
      const missing = programProblem(source.journalctl);
      if (missing !== undefined) problems.push(`${at}.journalctl: ${missing}`);
      if (source.directory !== undefined) {
        readCheck(source.directory, `${at}.directory`, "cannot read the directory");
        if (exists(source.directory) && !statSync(source.directory).isDirectory()) problems.push(`${at}.directory: ${source.directory} is not a directory`);
      }
    }
  }
  for (const [name, sink] of Object.entries(config.sinks)) {
    if (sink.type === "file") {
      const target = exists(sink.path) ? sink.path : nearestExisting(dirname(sink.path));
      check(target, `sinks.${name}.path`, constants.W_OK, "cannot write to");
    }
    if ((sink.type === "kafka" || sink.type === "forward") && sink.tls !== undefined) {
      for (const key of ["ca", "cert", "key"] as const) {
        const file = sink.tls[key];
        if (file !== undefined) readCheck(file, `sinks.${name}.tls.${key}`, "cannot read");
      }
    }
  }
  return problems;
}

/** A bare name is looked up on PATH as the agent will run it; a path is checked where it points. */
function programProblem(program: string): string | undefined {
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
