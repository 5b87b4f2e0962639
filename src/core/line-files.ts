/**
 * Durable append-only line files (the file sink's output, the dead-letter file): where the last whole line
 * ends, for cutting off what a killed writer tore, and the directory fsync that makes a rename durable.
 */
import { open, type FileHandle } from "node:fs/promises";

/** The size up to and including the last "\n" (0 when there is none), read backwards in 64 KiB steps. */
export async function lastNewlineEnd(file: FileHandle, size: number): Promise<number> {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await file.read(chunk, 0, end - start, start);
    const at = chunk.subarray(0, bytesRead).lastIndexOf(10);
    if (at >= 0) return start + at + 1;
    end = start;
  }
  return 0;
}

/** fsync of a directory, so that a rename or a new file in it survives a crash of the machine. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
