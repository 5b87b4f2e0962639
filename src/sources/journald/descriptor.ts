/** The journald source type: its config, its checks of this machine and of a gateway, its saved position. */
import { statSync } from "node:fs";
import { defineSource } from "../../core/descriptor.ts";
import { exists } from "../../core/fs-access.ts";
import { problems, programProblem, readProblem } from "../../config/blocks/environment.ts";
import { journaldSourceConfig, type JournaldSourceConfig } from "./config.ts";
import { journaldSavedPosition } from "./position.ts";

export const journald = defineSource({
  kind: "source",
  type: "journald",
  schema: journaldSourceConfig,
  position: journaldSavedPosition,
  async implementation() {
    const { JournaldSource } = await import("./source.ts");
    return { build: (name, config) => new JournaldSource(name, config) };
  },
  environment: environmentProblems,
  async probe(config, at, timeoutMs) {
    if (config.url === undefined) return [];
    const { probeGateway } = await import("./probe.ts");
    return [await probeGateway(at, config.url, timeoutMs)];
  },
});

/** What the way of reading needs: the export file, or journalctl (and its journal directory). A gateway is probed instead. */
function environmentProblems(config: JournaldSourceConfig, at: string): string[] {
  if (config.file !== undefined) return problems(readProblem(config.file, `${at}.file`, "cannot read"));
  if (config.url !== undefined) return [];
  const directory = config.directory;
  return problems(
    programProblem(config.journalctl, `${at}.journalctl`),
    directory === undefined ? undefined : readProblem(directory, `${at}.directory`, "cannot read the directory"),
    directory !== undefined && exists(directory) && !statSync(directory).isDirectory() ? `${at}.directory: ${directory} is not a directory` : undefined,
  );
}
