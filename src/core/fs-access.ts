/**
 * Whether the agent itself can see or read a path. Not existsSync or accessSync: Bun answers both with
 * access(2), which judges by the real uid and drops capabilities, so for the installed unit (user nagare with
 * CAP_DAC_READ_SEARCH) everything under /var/lib/docker (0710 root) would seem missing or unreadable although
 * the agent reads it fine. stat(2) and open(2) use the credentials the agent really has.
 */
import { closeSync, constants, openSync, statSync } from "node:fs";

export function exists(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false }) !== undefined;
}

/**
 * Undefined when the agent can open `path` for reading (a directory: list it), else the error code. Opened
 * non-blocking, so that a FIFO never waits for a writer.
 */
export function unreadable(path: string): string | undefined {
  try {
    closeSync(openSync(path, constants.O_RDONLY | constants.O_NONBLOCK));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? "inaccessible";
  }
}
