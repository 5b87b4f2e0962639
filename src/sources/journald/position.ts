/**
 * What a journald source saves in its checkpoint, checked when the checkpoint is loaded: the cursor of the last
 * acknowledged entry (a plain string, as `journalctl --cursor` takes it), and for a saved export file the file's
 * identity and the byte offset after that entry.
 */
import { z } from "zod";
import { definePosition } from "../../core/descriptor.ts";
import { shorten } from "../../core/text.ts";

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

/** The journald position in `nagare checkpoints`: the saved entry's sequence number and time (and file offset). */
export const journaldSavedPosition = definePosition({
  schema: journaldPosition,
  describe(position: JournalPosition) {
    const cursor = position.cursor === undefined ? "no cursor" : cursorSummary(position.cursor);
    const file = position.file;
    return [{ stream: "journal", summary: file === undefined ? cursor : `offset ${file.offset} in ${file.path} (${cursor})` }];
  },
});

/**
 * A journal cursor (`s=<seqnum id>;i=<seqnum>;b=<boot id>;m=<monotonic>;t=<realtime µs>;x=<hash>`, hex numbers)
 * as its entry's sequence number and time; a cursor of another form, shortened.
 */
function cursorSummary(cursor: string): string {
  const field = (key: string) => new RegExp(`(?:^|;)${key}=([0-9a-f]{1,16})(?:;|$)`).exec(cursor)?.[1];
  const seqnum = field("i");
  const realtime = field("t");
  if (seqnum === undefined || realtime === undefined) return `cursor ${shorten(cursor, 40)}`;
  // Not a hot path: BigInt keeps a 64-bit seqnum exact.
  const at = new Date(Number(BigInt(`0x${realtime}`) / 1000n)).toISOString().replace(/\.\d+Z$/, "Z");
  return `seqnum ${BigInt(`0x${seqnum}`)}, logged ${at}`;
}
