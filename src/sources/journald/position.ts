/**
 * What a journald source saves in its checkpoint, checked when the checkpoint is loaded: the cursor of the last
 * acknowledged entry (a plain string, as `journalctl --cursor` takes it), and for a saved export file the file's
 * identity and the byte offset after that entry.
 */
import { z } from "zod";

export const journaldPosition = z
  .object({
    cursor: z.string().min(1).optional().describe("__CURSOR of the last acknowledged entry; absent before the first entry with one."),
    file: z
      .object({
        path: z.string().min(1),
        dev: z.number().int().nonnegative(),
        ino: z.number().int().nonnegative(),
        offset: z.number().int().nonnegative().describe("Bytes of the export stream read up to and including that entry."),
      })
      .optional()
      .describe("Only for `file:` sources: which file the offset belongs to."),
  })
  .describe("The saved position of a journald source.");

export type JournalPosition = z.output<typeof journaldPosition>;
