/**
 * A rotated log file that was gzipped before the agent finished reading it (kubelet: `<name>.<YYYYMMDD-HHMMSS>.gz` for every
 * rotated file but the newest; dockerd with compress=true: `.N.gz` right after the rotation), read as the plain
 * file it was: the same bytes at the same offsets, so a saved position in it stays exact.
 *
 * gzip member (RFC 1952): header, deflate data, CRC32 (4 bytes LE), ISIZE (4 bytes LE, the uncompressed size mod
 * 2^32). kubelet and dockerd write one member, so ISIZE is the plain file's size for files under 4 GiB.
 *
 * Reading is forward-only through a streaming gunzip: memory stays at one decompressed chunk whatever the size.
 * The first FINGERPRINT_BYTES are kept, to answer the fingerprint reads at offset 0 without starting over. The
 * .gz is opened once, through the guard, and every restart of the stream reads that same descriptor.
 */
import type { FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { chainNames, FINGERPRINT_BYTES, fingerprintOf, type FileIdentity, type LogFile, type LogFileStat } from "./files.ts";
import type { FileGuard } from "./guard.ts";

const EMPTY = Buffer.alloc(0);
const RAW_CHUNK = 64 * 1024;

export class GzipLogFile implements LogFile {
  private streams: Readable[] = [];
  private chunks: AsyncIterator<Buffer> | undefined;
  /** Decompressed bytes starting at offset `currentAt`. */
  private current: Buffer = EMPTY;
  private currentAt = 0;
  private ended = false;
  private prefix: Buffer = EMPTY;
  /** Why the data ended early (a corrupt or cut gzip file), once. */
  failure: string | undefined;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    /** The plain file's size, from ISIZE. */
    private readonly size: number,
    /** The plain file's inode and modification time, as it was saved. */
    private readonly original: { dev: number; ino: number; mtimeMs: number },
  ) {}

  /** Opens `path` as the gzip of the file `original` describes; undefined when it cannot be read as gzip. */
  static async open(path: string, original: { dev: number; ino: number; mtimeMs: number }, guard: FileGuard): Promise<GzipLogFile | undefined> {
    const handle = await guard.open(path);
    if (handle === undefined) return undefined;
    const isize = await plainSizeOf(handle).catch(() => undefined);
    if (isize === undefined) {
      await handle.close();
      return undefined;
    }
    const file = new GzipLogFile(path, handle, isize, original);
    const prefix = Buffer.alloc(Math.min(FINGERPRINT_BYTES, file.size));
    let got = 0;
    while (got < prefix.length) {
      const { bytesRead } = await file.read(prefix, got, prefix.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    file.prefix = prefix.subarray(0, got);
    return file;
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    if (position + length <= this.prefix.length) {
      buffer.set(this.prefix.subarray(position, position + length), offset);
      return { bytesRead: length };
    }
    if (position < this.currentAt) this.restart();
    while (position >= this.currentAt + this.current.length && !this.ended) await this.advance();
    const from = position - this.currentAt;
    if (from >= this.current.length) return { bytesRead: 0 };
    const n = Math.min(length, this.current.length - from);
    buffer.set(this.current.subarray(from, from + n), offset);
    return { bytesRead: n };
  }

  async stat(): Promise<LogFileStat> {
    // A deleted .gz being read shows as nlink 0.
    const st = await this.handle.stat().catch(() => ({ nlink: 0 }));
    // ISIZE of a cut file is whatever bytes ended up last: once the data ended, its size is what it held.
    const decompressed = this.currentAt + this.current.length;
    return { size: this.ended ? decompressed : Math.max(this.size, decompressed), mtimeMs: this.original.mtimeMs, nlink: st.nlink, dev: this.original.dev, ino: this.original.ino };
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.destroy();
    this.streams = [];
    await this.handle.close().catch(() => undefined);
  }

  private async advance(): Promise<void> {
    if (this.chunks === undefined) this.restart();
    this.currentAt += this.current.length;
    this.current = EMPTY;
    try {
      const next = await this.chunks!.next();
      if (next.done) this.ended = true;
      else this.current = next.value;
    } catch (err) {
      this.ended = true;
      this.failure = `${this.path} could not be decompressed after byte ${this.currentAt} (${(err as Error).message})`;
    }
  }

  private restart(): void {
    for (const s of this.streams) s.destroy();
    // One descriptor per open file, so max_open_files holds: each restart reads the same one from its start.
    const raw = Readable.from(rawChunks(this.handle));
    const stream = raw.pipe(createGunzip());
    this.streams = [raw, stream];
    this.chunks = stream[Symbol.asyncIterator]();
    this.current = EMPTY;
    this.currentAt = 0;
    this.ended = false;
  }
}

/** The compressed bytes from the start, by position: the stream never moves the descriptor's own offset. */
async function* rawChunks(handle: FileHandle): AsyncGenerator<Buffer> {
  let position = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(RAW_CHUNK);
    const { bytesRead } = await handle.read(chunk, 0, RAW_CHUNK, position);
    if (bytesRead === 0) return;
    position += bytesRead;
    yield chunk.subarray(0, bytesRead);
  }
}

/** ISIZE of a gzip file, or undefined when it is not one (no magic bytes, shorter than a header and trailer). */
async function plainSizeOf(handle: FileHandle): Promise<number | undefined> {
  const { size } = await handle.stat();
  const magic = Buffer.alloc(2);
  await handle.read(magic, 0, 2, 0);
  if (size < 18 || magic[0] !== 0x1f || magic[1] !== 0x8b) return undefined;
  const trailer = Buffer.alloc(4);
  await handle.read(trailer, 0, 4, size - 4);
  return trailer.readUInt32LE(0);
}

/**
 * The gzipped copy of the file `identity` describes, among the siblings of its path (`x.log.1.gz`,
 * `x.log.20240102-030405.gz`): the one whose decompressed first bytes match the fingerprint and which holds at
 * least `atLeast` bytes. Undefined when there is none.
 */
export async function findCompressed(identity: FileIdentity, atLeast: number, modifiedMs: number, guard: FileGuard): Promise<GzipLogFile | undefined> {
  const dir = dirname(identity.path);
  const names = chainNames(identity.path).filter((name) => name.endsWith(".gz"));
  for (const name of names.sort()) {
    const file = await GzipLogFile.open(join(dir, name), { dev: identity.dev, ino: identity.ino, mtimeMs: modifiedMs }, guard);
    if (file === undefined) continue;
    const { size } = await file.stat();
    if (size >= atLeast && size >= identity.fingerprintBytes && (await fingerprintOf(file, identity.fingerprintBytes)) === identity.fingerprint) return file;
    await file.close();
  }
  return undefined;
}
