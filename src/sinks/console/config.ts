import { z } from "zod";
import { idField, inputs } from "../../config/blocks/types.ts";

export const consoleSinkConfig = z
  .strictObject({
    type: z.literal("console"),
    inputs,
    stream: z.enum(["stdout", "stderr"]).default("stdout").describe("Where the JSON lines go."),
    id_field: idField,
  })
  .describe("Prints each record as one JSON line.");

export type ConsoleSinkConfig = z.output<typeof consoleSinkConfig>;
