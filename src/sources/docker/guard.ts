/**
 * Which files the docker source may read. The agent holds CAP_DAC_READ_SEARCH to read root's container logs, so
 * whatever it opens it can read: a symlink named like a log file, planted by anyone who can write into a log
 * directory (a pod with a hostPath mount of /var/log/pods, a container running as root on a bind mount), would
 * make it ship /etc/shadow. So a file is read only when it is a regular file whose real path lies under an include
 * pattern's base directory or under one of `allowed_link_targets` (kubelet's /var/log/containers links point
 * into /var/log/pods).
 *
 * The check is made on what was opened, not only on the name: the path is resolved, its target checked, opened
 * with O_NOFOLLOW (O_NONBLOCK: a FIFO would block the open), and the descriptor must be a regular file with the
 * device and inode checked, whose kernel path (/proc/self/fd) still lies under an allowed directory. A link
 * swapped in between is thus never read; the next attempt resolves it again and refuses it.
 */
import { constants, realpathSync } from "node:fs";
import { open, readlink, realpath, stat, type FileHandle } from "node:fs/promises";
import { resolve } from "node:path";

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

export interface Refusal {
  /** The name the source found (a link, or a path through a linked directory). */
  path: string;
  /** Where it leads. */
  target: string;
  reason: string;
}

export class FileGuard {
  private roots: string[] = [];

  constructor(
    /** Directories files may lie under, as configured (include bases and allowed link targets). */
    private readonly allowed: readonly string[],
    private readonly onRefused: (refusal: Refusal) => void,
  ) {
    this.refresh();
  }

  /** Resolves the allowed directories again (one may have been created, or be a link itself, e.g. a moved data-root). */
  refresh(): void {
    const roots = new Set<string>();
    for (const dir of this.allowed) {
      const literal = resolve(dir);
      roots.add(literal);
      try {
        roots.add(realpathSync(literal));
      } catch {
        // Not there (yet): the literal path is all there is to compare with.
      }
    }
    this.roots = [...roots];
  }

  /** Whether a real (link-free) path lies under an allowed directory. */
  allows(real: string): boolean {
    return this.roots.some((root) => real === root || real.startsWith(root === "/" ? "/" : `${root}/`));
  }

  /**
   * Opens `path` for reading when it may be read; undefined when it is missing, or refused (then `onRefused` is
   * told), or was replaced while being opened.
   */
  async open(path: string): Promise<FileHandle | undefined> {
    const target = await realpath(path).catch(() => undefined);
    if (target === undefined) return undefined;
    if (!this.allows(target)) return this.refuse(path, target, "its real path is outside the include directories and allowed_link_targets");
    const st = await stat(target).catch(() => undefined);
    if (st === undefined) return undefined;
    if (!st.isFile()) return this.refuse(path, target, "it is not a regular file");
    const file = await open(target, OPEN_FLAGS).catch(() => undefined);
    if (file === undefined) return undefined;
    const opened = await file.stat().catch(() => undefined);
    const kernelPath = await readlink(`/proc/self/fd/${file.fd}`).catch(() => target);
    if (opened !== undefined && opened.isFile() && opened.dev === st.dev && opened.ino === st.ino && this.allows(kernelPath)) return file;
    await file.close().catch(() => undefined);
    return undefined;
  }

  private refuse(path: string, target: string, reason: string): undefined {
    this.onRefused({ path, target, reason });
    return undefined;
  }
}
