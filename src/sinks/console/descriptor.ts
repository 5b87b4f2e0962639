/** The console sink type: JSON lines on stdout. */
import { defineSink } from "../../core/descriptor.ts";
import { consoleSinkConfig } from "./config.ts";

export const consoleSink = defineSink({
  kind: "sink",
  type: "console",
  schema: consoleSinkConfig,
  async implementation() {
    const { ConsoleSink } = await import("./sink.ts");
    return { build: (name, config) => new ConsoleSink(name, config) };
  },
});
