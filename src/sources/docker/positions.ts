/**
 * The docker source's saved positions, one per stream (container, or file in kubelet's layout): loaded from the
 * checkpoint, moved by acknowledged watermarks, and forgotten `forget_after` after their file is gone, so that
 * neither memory nor the checkpoint grows with every container a host ever ran (a flat directory such as
 * /var/log/containers never goes away itself).
 *
 * Why a grace period rather than at once: a position is worth keeping while its file may come back under its name
 * with the same identity: a rotation renames it for an instant, a log volume is mounted after the agent started or
 * remounted, a directory is moved away and back. Forgotten too early, such a file is read again from its start
 * (duplicates); kept, it costs a few hundred bytes of checkpoint.
 */
import { exists } from "./files.ts";
import type { ContainerPositions, SavedPosition } from "./position.ts";
import type { FilePosition } from "./tailer.ts";

export class SavedPositions {
  private entries = new Map<string, SavedPosition>();
  /** Streams whose file was found gone, and since when (performance.now()). */
  private readonly goneSince = new Map<string, number>();

  constructor(private readonly forgetAfterMs: number) {}

  load(saved: ContainerPositions | undefined): void {
    this.entries = new Map(Object.entries(saved?.containers ?? {}));
  }

  get(stream: string): SavedPosition | undefined {
    return this.entries.get(stream);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The positions with the watermarks acknowledged since the last call, as the checkpoint to save. */
  checkpoint(watermarks: ReadonlyMap<string, FilePosition>): ContainerPositions {
    for (const [stream, position] of watermarks) {
      this.entries.set(stream, { identity: position.identity, offset: position.offset, modifiedMs: position.modifiedMs });
    }
    return { containers: Object.fromEntries(this.entries) };
  }

  /**
   * Forgets the positions whose file has been gone for forget_after: no tailer follows the stream (`live`) and
   * nothing is at the file's path. Returns whether any was forgotten (the checkpoint must then be written).
   */
  forgetGone(live: ReadonlySet<string>, now: number): boolean {
    let forgot = false;
    for (const [stream, saved] of this.entries) {
      if (live.has(stream)) {
        this.goneSince.delete(stream);
        continue;
      }
      const since = this.goneSince.get(stream);
      if (since === undefined) {
        // Gone once, it stays gone until discovery finds it again (then it is live): no need to look again.
        if (!exists(saved.identity.path)) this.goneSince.set(stream, now);
      } else if (now - since >= this.forgetAfterMs) {
        this.entries.delete(stream);
        this.goneSince.delete(stream);
        forgot = true;
      }
    }
    return forgot;
  }
}
