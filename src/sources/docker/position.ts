/**
 * What a docker source saves in its checkpoint, checked when the checkpoint is loaded: per stream (a container,
 * or a file in kubelet's layout), the file it was reading and the offset after its last acknowledged record.
 */
import { z } from "zod";
import { definePosition } from "../../core/descriptor.ts";

const fileIdentity = z.object({
  path: z.string().min(1),
  dev: z.number().int().nonnegative(),
  ino: z.number().int().nonnegative(),
  fingerprint: z.string(),
  fingerprintBytes: z.number().int().nonnegative(),
});

const savedFile = z.object({
  identity: fileIdentity,
  offset: z.number().int().nonnegative(),
  // Checkpoints written before the modification time was kept have none: 0 means "unknown".
  modifiedMs: z.number().nonnegative().default(0),
});

export const dockerPosition = z
  .object({ containers: z.record(z.string().min(1), savedFile) })
  .describe("The saved positions of a docker source, one per stream.");

export type SavedPosition = z.output<typeof savedFile>;
export type ContainerPositions = z.output<typeof dockerPosition>;

/** The docker positions in `nagare checkpoints`: per stream, the offset in the file it was reading. */
export const dockerSavedPosition = definePosition({
  schema: dockerPosition,
  describe(position: ContainerPositions) {
    const streams = Object.keys(position.containers).sort();
    if (streams.length === 0) return [{ stream: "-", summary: "no file read yet" }];
    return streams.map((stream) => {
      const saved = position.containers[stream]!;
      return { stream: shortStream(stream), summary: `offset ${saved.offset} in ${saved.identity.path}` };
    });
  },
});

/** Docker's short container id (its first 12 hex digits), as `docker ps` shows it; other streams (paths) whole. */
function shortStream(stream: string): string {
  return /^[0-9a-f]{64}$/.test(stream) ? stream.slice(0, 12) : stream;
}
