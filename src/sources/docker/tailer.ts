/**
 * Follows one container's log file through rotations. Reads complete lines only; what follows the last newline
 * waits for the rest of its line. Rotation by rename (dockerd): the file is read to its end, then the file now at
 * the path is read from its start, and a partial line that straddles the rename is still merged. copytruncate
 * (the file shrank): read again from the start. A file that disappeared is read to its end and let go.
 *
 * Positions are never in the middle of an unfinished merge: a record's position is the merger's safe offset,
 * and while a merge carried over from the previous file is open, it stays in that previous file. Nor inside a
 * physical line: a line longer than max_line_bytes + LINE_SLACK streams past with only its head and tail kept,
 * and becomes one record at its newline, so a restart in the middle of it reads it again from its start.
 *
 * Every file is opened through the guard (guard.ts): the path, its rotated siblings and their .gz copies alike.
 */
import { stat } from "node:fs/promises";
import { decodeLine, detectFormat, PartialMerger, type DecodedLine, type LogFormat, type MergedRecord } from "./codec.ts";
import { openNextAfter } from "./chain.ts";
import { FINGERPRINT_BYTES, findCopy, findFile, fingerprintOf, identify, openOldestInChain, type FileIdentity, type LogFile } from "./files.ts";
import type { FileGuard } from "./guard.ts";
import { findCompressed, GzipLogFile } from "./gzip-file.ts";
import { LongLine } from "./long-line.ts";

/** Where reading resumes after everything up to here is done: a file and an offset in it. */
export interface FilePosition {
  stream: string;
  identity: FileIdentity;
  offset: number;
  /**
   * The file's modification time when it was read up to here. If the file is gone when reading resumes (rotated
   * out while the agent was away), the next file of the chain is the oldest one modified after it.
   */
  modifiedMs: number;
}

export interface TailedRecord {
  merged: MergedRecord;
  position: FilePosition;
  identity: FileIdentity;
}

const NEWLINE = 10;
/**
 * A physical line may exceed max_line_bytes by this much and still be decoded whole: room for the json-file
 * envelope and attrs, escapes, and the CRI prefix, so that a line whose text fits is never cut.
 */
const LINE_SLACK = 64 * 1024;
/** The tailed path gone this long while its file is read to its end (the link was removed, the file lives on): let go. */
const PATH_GONE_GRACE_MS = 10_000;
const KEEP_MORE_FILES = "Keep more rotated files (dockerd max-file, kubelet containerLogMaxFiles) or keep the agent running to avoid this";

export class Tailer {
  private file: LogFile | undefined;
  private identity: FileIdentity | undefined;
  /** Bytes through the last complete line of the current file. */
  private consumed = 0;
  private carry: Buffer | undefined;
  /** The line being skipped past (longer than maxLineBytes + LINE_SLACK); it begins at `consumed`. */
  private long: LongLine | undefined;
  private format: LogFormat | undefined;
  private merger: PartialMerger;
  private carried: FilePosition | undefined;
  /** The file at `path` is newer than the one being read (renamed away): switch once this one is read. */
  private rotatedAway = false;
  /** Set when the saved or current file was deleted before it was read to its end: what was lost (for an ERROR). */
  lost: string | undefined;
  /** Set when reading resumed in a gzipped copy of the saved file: where (for an INFO line). */
  resumedCompressed: string | undefined;
  /** Modification time of the current file at the last read. */
  private modifiedMs = 0;
  /** The file was removed and fully read: the tailer can go. */
  finished = false;
  lastReadAt = 0;
  /** Since when (performance.now()) the closed file has not been found by discovery. */
  missingSince: number | undefined;
  /** Bytes of the file not read yet when it was last closed (what is lost if it is deleted while closed). */
  unreadAtClose = 0;
  /** Since when (performance.now()) the tailed path has been missing while the open file was at its end. */
  private pathGoneSince: number | undefined;

  constructor(
    readonly path: string,
    readonly stream: string,
    private readonly configuredFormat: LogFormat | undefined,
    private readonly maxLineBytes: number,
    /** Resume here (a saved position), or start at the end of the file ("tail"), or at the head (undefined). */
    private start: FilePosition | "tail" | undefined,
    private readonly guard: FileGuard,
  ) {
    this.merger = new PartialMerger(maxLineBytes);
  }

  get isOpen(): boolean {
    return this.file !== undefined;
  }

  /** The offset the next read starts at: through the last complete line, the partial line held, the line skipped. */
  private get readOffset(): number {
    return this.consumed + (this.carry?.length ?? 0) + (this.long?.length ?? 0);
  }

  /** Opens the file to read: the saved one (found even after a rotation while the agent was down), else the path. */
  async open(): Promise<boolean> {
    if (this.file !== undefined) return true;
    if (this.identity !== undefined || typeof this.start === "object") {
      const wanted = this.identity ?? (this.start as FilePosition).identity;
      const found = await findFile(wanted, this.guard);
      if (found !== undefined) {
        this.file = found;
        this.identity = wanted;
        if (this.start !== undefined && typeof this.start === "object") this.setStart(this.start.offset);
        this.start = undefined;
        const atPath = await stat(this.path).catch(() => undefined);
        this.rotatedAway = atPath === undefined || atPath.ino !== wanted.ino || atPath.dev !== wanted.dev;
        return true;
      }
      // Gone: rotated out while we were away. Compressed by the rotation (kubelet, dockerd compress=true)? Then
      // read the rest from the .gz; else go on with the file that came after it, if it is still there.
      const since = typeof this.start === "object" ? this.start.modifiedMs : this.modifiedMs;
      const offset = typeof this.start === "object" ? this.start.offset : this.readOffset;
      const compressed = await findCompressed(wanted, offset, since, this.guard);
      if (compressed !== undefined) {
        this.file = compressed;
        this.identity = wanted;
        if (typeof this.start === "object") this.setStart(this.start.offset);
        this.start = undefined;
        this.rotatedAway = true;
        this.resumedCompressed = `${wanted.path} (inode ${wanted.ino}) was compressed to ${compressed.path} by rotation while it was not open; its lines after byte ${offset} are read from there`;
        return true;
      }
      const next = since > 0 ? await openNextAfter(wanted, since, this.guard) : undefined;
      this.start = undefined;
      if (next !== undefined) {
        this.lost = `${wanted.path} (inode ${wanted.ino}, read up to byte ${offset}) was deleted by rotation while it was not open; reading goes on with the next file of its chain, and the lines written to it after that byte, if any, are lost. ${KEEP_MORE_FILES}`;
        this.file = next;
        this.identity = await identify(next, this.path);
        this.setStart(0);
        const atPath = await stat(this.path).catch(() => undefined);
        this.rotatedAway = atPath === undefined || atPath.ino !== this.identity.ino || atPath.dev !== this.identity.dev;
        return true;
      }
      this.lost = `${wanted.path} (inode ${wanted.ino}, read up to byte ${offset}) and the files rotated after it were deleted while they were not open; reading starts again at the oldest file still present, and the lines those files held after that byte are lost. ${KEEP_MORE_FILES}`;
      this.identity = undefined;
    }
    // From the head: a container seen for the first time is read from its oldest rotated file still on disk,
    // so what it logged before it was found (or while the agent was away) is not skipped.
    const opened = this.start === "tail" ? { path: this.path, file: await this.guard.open(this.path) } : await openOldestInChain(this.path, this.guard);
    const file = opened?.file;
    if (file === undefined) return false;
    this.file = file;
    this.identity = await identify(file, this.path);
    if (this.start === "tail") this.setStart((await file.stat()).size, true);
    else this.setStart(0);
    this.start = undefined;
    this.rotatedAway = opened!.path !== this.path;
    return true;
  }

  /** Bytes held by the open file if it was deleted (its space is freed only when it is read and closed). */
  async checkHeldDeleted(): Promise<number> {
    const st = await this.file?.stat().catch(() => undefined);
    return st !== undefined && st.nlink === 0 ? st.size : 0;
  }

  /** Closes the descriptor (to stay under max_open_files); reading continues later where it stopped. */
  async close(): Promise<void> {
    const file = this.file;
    if (file === undefined) return;
    this.file = undefined;
    const st = await file.stat().catch(() => undefined);
    this.unreadAtClose = st === undefined ? 0 : Math.max(0, st.size - this.readOffset);
    await file.close().catch(() => undefined);
  }

  /**
   * Reads up to `chunk.length` bytes into `chunk` and appends the records they complete; nothing refers to `chunk`
   * afterwards, so one buffer serves every read of a source. Returns the number of bytes read (0 at
   * the end of the file, after checking for rotation and truncation).
   */
  async read(out: TailedRecord[], chunk: Buffer): Promise<number> {
    if (!(await this.open())) return 0;
    let file = this.file!;
    if (await this.wasTruncated(file)) {
      await this.followTruncation();
      if (this.file === undefined) return 0;
      file = this.file;
    }
    const from = this.readOffset;
    const { bytesRead } = await file.read(chunk, 0, chunk.length, from);
    if (bytesRead === 0) {
      if (file instanceof GzipLogFile && file.failure !== undefined) {
        this.lost = `${file.failure}; reading goes on with the next file of its chain, and the lines after that byte are lost`;
        file.failure = undefined;
      }
      // Switched to the next file of the chain: read it now rather than after a poll interval.
      if (await this.atEnd(out)) return this.read(out, chunk);
      return 0;
    }
    this.lastReadAt = performance.now();
    if (this.identity!.fingerprintBytes < FINGERPRINT_BYTES && from + bytesRead > this.identity!.fingerprintBytes) {
      // The file was short when first seen: widen the fingerprint so a reused inode cannot pass for it later.
      this.identity = await identify(file, this.identity!.path);
    }
    this.consume(this.carry === undefined ? chunk.subarray(0, bytesRead) : Buffer.concat([this.carry, chunk.subarray(0, bytesRead)]), out);
    return bytesRead;
  }

  /** Ends the tailer for a removed file: merges in progress, and a long line, become records as far as they got. */
  drainPartials(out: TailedRecord[]): void {
    if (this.long !== undefined) this.endLong(out, false);
    for (const merged of this.merger.flush()) out.push(this.tailed(merged));
  }

  private setStart(offset: number, tail = false): void {
    this.consumed = offset;
    this.carry = undefined;
    this.long = undefined;
    this.merger = new PartialMerger(this.maxLineBytes, offset);
    if (tail) this.format = this.configuredFormat;
  }

  /**
   * Splits complete lines off `data` (which begins at `readOffset` before this read), decodes and merges them. A
   * line without its newline is held as `carry` up to maxLineBytes + LINE_SLACK; beyond that it is skipped past.
   */
  private consume(data: Buffer, out: TailedRecord[]): void {
    let pos = 0;
    if (this.long !== undefined) {
      const nl = data.indexOf(NEWLINE);
      this.long.add(nl < 0 ? data : data.subarray(0, nl));
      if (nl < 0) return;
      this.endLong(out, true);
      pos = nl + 1;
    }
    // From here data[pos] is at offset `consumed`.
    const first = pos;
    for (;;) {
      const nl = data.indexOf(NEWLINE, pos);
      if (nl < 0) break;
      const line = data.subarray(pos, nl);
      this.format ??= this.configuredFormat ?? detectFormat(line) ?? "json-file";
      this.push(decodeLine(line, this.format), this.consumed + (nl + 1 - first), out);
      pos = nl + 1;
    }
    this.consumed += pos - first;
    const rest = data.length - pos;
    if (rest === 0) this.carry = undefined;
    else if (rest > this.maxLineBytes + LINE_SLACK) {
      this.carry = undefined;
      this.long = new LongLine(this.maxLineBytes + LINE_SLACK);
      this.long.add(data.subarray(pos));
    } else this.carry = Buffer.from(data.subarray(pos));
  }

  /** The skipped line is over (its newline read, or its file ended for good): one record, cut and marked. */
  private endLong(out: TailedRecord[], newline: boolean): void {
    const long = this.long!;
    this.long = undefined;
    this.format ??= this.configuredFormat ?? detectFormat(long.head) ?? "json-file";
    this.consumed += long.length + (newline ? 1 : 0);
    this.push(long.decode(this.format), this.consumed, out);
  }

  private push(line: DecodedLine, end: number, out: TailedRecord[]): void {
    const merged = this.merger.push(line, end);
    if (this.carried !== undefined && this.merger.pendingStreams === 0) this.carried = undefined;
    if (merged !== undefined) out.push(this.tailed(merged));
  }

  private tailed(merged: MergedRecord): TailedRecord {
    const identity = this.identity!;
    const position = this.carried ?? { stream: this.stream, identity, offset: this.merger.safeOffset, modifiedMs: this.modifiedMs };
    return { merged, position, identity };
  }

  /** The file was emptied in place (copytruncate): it is shorter than what was read, or starts differently. */
  private async wasTruncated(file: LogFile): Promise<boolean> {
    const st = await file.stat();
    this.modifiedMs = st.mtimeMs;
    if (st.size < this.readOffset) return true;
    const id = this.identity!;
    return id.fingerprintBytes > 0 && st.size >= id.fingerprintBytes && (await fingerprintOf(file, id.fingerprintBytes)) !== id.fingerprint;
  }

  /**
   * After copytruncate: finish reading the copy (logrotate copied the file before emptying it, so what was
   * written after our last read is there), then read the emptied file again from its start.
   */
  private async followTruncation(): Promise<void> {
    const copy = await findCopy(this.identity!, this.consumed, this.guard);
    const snapshot = this.merger.snapshot();
    const pending = this.merger.pendingStreams > 0;
    const consumed = this.consumed;
    const carry = this.carry;
    const long = this.long;
    await this.close();
    if (copy !== undefined) {
      // Same bytes up to `consumed`: carry on in the copy exactly where reading stopped.
      this.file = copy;
      this.identity = await identify(copy, this.path);
      this.consumed = consumed;
      this.carry = carry;
      this.long = long;
      this.rotatedAway = true;
      return;
    }
    if (pending) this.carried ??= { stream: this.stream, identity: this.identity!, offset: this.merger.safeOffset, modifiedMs: this.modifiedMs };
    // The emptied file is not the file `identity` describes any more: never look for it again by that identity.
    this.identity = undefined;
    const file = await this.guard.open(this.path);
    if (file === undefined) return;
    this.file = file;
    this.identity = await identify(file, this.path);
    this.setStart(0);
    this.merger.restore(snapshot);
  }

  /**
   * At the end of the file: follow a rotation, or notice the file is gone. True when there is more to read now:
   * the rest of this file, or the next file (open).
   */
  private async atEnd(out: TailedRecord[]): Promise<boolean> {
    const atPath = await stat(this.path).catch(() => undefined);
    if (atPath !== undefined) this.pathGoneSince = undefined;
    const renamed = this.rotatedAway || atPath === undefined || atPath.ino !== this.identity!.ino || atPath.dev !== this.identity!.dev;
    if (!renamed) return false;
    // Looked at after the path: the writer may have appended between our last read and its rename or removal.
    const st = await this.file!.stat();
    if (st.size > this.readOffset) return true;
    if (atPath === undefined) {
      // Removed (container deleted) and read to its end: finish what was open and let it go. Also when the file
      // lives on under another name but the tailed name stays gone (a kubelet link removed, a hard link left).
      this.pathGoneSince ??= performance.now();
      if (st.nlink === 0 || performance.now() - this.pathGoneSince >= PATH_GONE_GRACE_MS) {
        this.drainPartials(out);
        await this.close();
        this.finished = true;
      }
      return false;
    }
    // Rotated: this file is read to its end; go on with the next newer file of the chain (the file at the path
    // once every rotated one is read), carrying open merges over. A line skipped past ends here: its rest went to
    // no file.
    const file = await openNextAfter(this.identity!, st.mtimeMs, this.guard);
    if (file === undefined) return false;
    if (this.long !== undefined) this.endLong(out, false);
    const snapshot = this.merger.snapshot();
    if (this.merger.pendingStreams > 0) this.carried ??= { stream: this.stream, identity: this.identity!, offset: this.merger.safeOffset, modifiedMs: this.modifiedMs };
    await this.close();
    this.file = file;
    this.identity = await identify(file, this.path);
    const atPathNow = await stat(this.path).catch(() => undefined);
    this.rotatedAway = atPathNow === undefined || atPathNow.ino !== this.identity.ino || atPathNow.dev !== this.identity.dev;
    this.setStart(0);
    this.merger.restore(snapshot);
    return true;
  }
}
