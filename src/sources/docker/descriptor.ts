/** The docker source type: its config, its check of the directories it reads, its saved positions. */
import { defineSource } from "../../core/descriptor.ts";
import { splitPattern } from "../../core/glob.ts";
import { directoryProblem, problems } from "../../config/blocks/environment.ts";
import { dockerSourceConfig } from "./config.ts";
import { dockerSavedPosition } from "./position.ts";

export const docker = defineSource({
  kind: "source",
  type: "docker",
  schema: dockerSourceConfig,
  position: dockerSavedPosition,
  async implementation() {
    const { DockerSource } = await import("./source.ts");
    return { build: (name, config) => new DockerSource(name, config) };
  },
  // A directory that does not exist yet is fine (dockerd not started yet); one the agent cannot read is not.
  environment: (config, at) => problems(...config.include.map((pattern, i) => directoryProblem(splitPattern(pattern).base, `${at}.include[${i}]`))),
});
