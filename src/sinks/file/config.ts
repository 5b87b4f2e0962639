import { z } from "zod";
import { idField, inputs } from "../../config/blocks/types.ts";

export const fileSinkConfig = z
  .strictObject({
    type: z.literal("file"),
    inputs,
    path: z.string().min(1).describe("File the JSON lines are appended to (created with mode 0640 if missing, and its missing parent directories with mode 0750)."),
    fsync: z
      .boolean()
      .default(false)
      .describe("fsync after each batch before acknowledging it (survives a host crash, not only an agent crash)."),
    id_field: idField,
  })
  .describe("Appends each record as one JSON line to a file.");

export type FileSinkConfig = z.output<typeof fileSinkConfig>;
