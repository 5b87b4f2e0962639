/** The file sink type: JSON lines appended to a file, which must be writable where it is or would be created. */
import { dirname } from "node:path";
import { defineSink } from "../../core/descriptor.ts";
import { exists } from "../../core/fs-access.ts";
import { nearestExisting, problems, writeProblem } from "../../config/blocks/environment.ts";
import { fileSinkConfig } from "./config.ts";

export const fileSink = defineSink({
  kind: "sink",
  type: "file",
  schema: fileSinkConfig,
  async implementation() {
    const { FileSink } = await import("./sink.ts");
    return { build: (name, config, { log }) => new FileSink(name, config, log.child({ component: name })) };
  },
  environment: (config, at) => problems(writeProblem(exists(config.path) ? config.path : nearestExisting(dirname(config.path)), `${at}.path`)),
});
