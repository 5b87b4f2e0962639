/**
 * What a docker source saves in its checkpoint, checked when the checkpoint is loaded: per stream (a container,
 * or a file in kubelet's layout), the file it was reading and the offset after its last acknowledged record.
 */
import { z } from "zod";

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
