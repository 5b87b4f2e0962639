/**
 * Identity of a log file across renames and restarts: device and inode, plus a fingerprint of its first bytes,
 * because a deleted file's inode is soon given to a new file and inode equality alone would resume a stranger
 * at the old offset.
 */
import { stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { readdirSync, statSync } from "node:fs";
import type { FileGuard } from "./guard.ts";

export const FINGERPRINT_BYTES = 256;

export interface FileIdentity {
  /** The tailed path (the name the file had when it was current); rotation may have renamed the file since. */
  path: string;
  dev: number;
  ino: number;
  /** MD5 (hex) of the first `fingerprintBytes` bytes; fewer than FINGERPRINT_BYTES while the file is short. */
  fingerprint: string;
  fingerprintBytes: number;
}

/** What reading needs of a log file: a plain file (a FileHandle), or a gzipped one read as plain (gzip-file.ts). */
export interface LogFile {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<LogFileStat>;
  close(): Promise<void>;
}

export interface LogFileStat {
  size: number;
  mtimeMs: number;
  nlink: number;
  dev: number;
  ino: number;
}

export async function fingerprintOf(file: LogFile, bytes: number): Promise<string> {
  const buffer = Buffer.alloc(bytes);
  const { bytesRead } = await file.read(buffer, 0, bytes, 0);
  return Bun.CryptoHasher.hash("md5", buffer.subarray(0, bytesRead), "hex") as string;
}

/** The identity of an open file; the fingerprint covers what the file holds now, up to FINGERPRINT_BYTES. */
export async function identify(file: LogFile, path: string): Promise<FileIdentity> {
  const st = await file.stat();
  const fingerprintBytes = Math.min(st.size, FINGERPRINT_BYTES);
  return { path, dev: st.dev, ino: st.ino, fingerprint: await fingerprintOf(file, fingerprintBytes), fingerprintBytes };
}

/** Whether an open file is the one `identity` describes (same inode, same first bytes). */
async function isSameFile(file: FileHandle, identity: FileIdentity): Promise<boolean> {
  const st = await file.stat();
  if (st.dev !== identity.dev || st.ino !== identity.ino || st.size < identity.fingerprintBytes) return false;
  return (await fingerprintOf(file, identity.fingerprintBytes)) === identity.fingerprint;
}

export { exists } from "../../core/fs-access.ts";

/** The names in the directory of `path` that start with its name (its rotation chain, itself included). */
export function chainNames(path: string): string[] {
  try {
    return readdirSync(dirname(path)).filter((name) => name.startsWith(basename(path)));
  } catch {
    return [];
  }
}

/**
 * Where the file `identity` describes is now: at its path, or renamed by rotation to a sibling (`x.log.1`,
 * `x.log.2`, dockerd; dated names, kubelet). Returns its name and an open handle, or undefined when it is gone.
 * Siblings are opened through the guard like the path: a planted `x.log.1` link is no way around it.
 */
export async function locate(identity: FileIdentity, guard: FileGuard): Promise<{ name: string; file: FileHandle } | undefined> {
  const dir = dirname(identity.path);
  const base = basename(identity.path);
  const siblings = chainNames(identity.path).filter((name) => name !== base && isPlainLog(name));
  for (const name of [base, ...siblings.sort()]) {
    const st = await stat(join(dir, name)).catch(() => undefined);
    if (st === undefined || st.dev !== identity.dev || st.ino !== identity.ino) continue;
    // Same inode is not enough: a deleted file's inode is soon reused by a newer file of the same chain.
    const file = await guard.open(join(dir, name));
    if (file === undefined) continue;
    if (await isSameFile(file, identity)) return { name, file };
    await file.close();
  }
  return undefined;
}

/** The file `identity` describes, open, wherever rotation renamed it; undefined when it is gone. */
export async function findFile(identity: FileIdentity, guard: FileGuard): Promise<FileHandle | undefined> {
  return (await locate(identity, guard))?.file;
}

/** A copy of the file (logrotate's copytruncate): a sibling that starts with the same bytes and holds more. */
export async function findCopy(identity: FileIdentity, atLeast: number, guard: FileGuard): Promise<FileHandle | undefined> {
  const dir = dirname(identity.path);
  const base = basename(identity.path);
  const names = chainNames(identity.path).filter((name) => name !== base && isPlainLog(name));
  for (const name of names.sort()) {
    const file = await guard.open(join(dir, name));
    if (file === undefined) continue;
    const st = await file.stat();
    if (st.size >= atLeast && st.size >= identity.fingerprintBytes && (await fingerprintOf(file, identity.fingerprintBytes)) === identity.fingerprint) return file;
    await file.close();
  }
  return undefined;
}

/**
 * The oldest file of a rotation chain that may be read (`x.log.N` with the highest N, or the oldest dated sibling,
 * else the path itself), open, with its path; undefined when none can be opened.
 */
export async function openOldestInChain(path: string, guard: FileGuard): Promise<{ path: string; file: FileHandle } | undefined> {
  for (const candidate of [...(await chainOldestFirst(path)), path]) {
    const file = await guard.open(candidate);
    if (file !== undefined) return { path: candidate, file };
  }
  return undefined;
}

/** The rotated siblings of `path`, oldest first: by number where numbered, else by modification time. */
async function chainOldestFirst(path: string): Promise<string[]> {
  const dir = dirname(path);
  const base = basename(path);
  const names = chainNames(path).filter((name) => name.startsWith(`${base}.`) && isPlainLog(name));
  if (names.length === 0) return [];
  const numbered = names.map((name) => ({ name, n: Number(/^\.(\d+)$/.exec(name.slice(base.length))?.[1] ?? Number.NaN) })).filter((x) => !Number.isNaN(x.n));
  if (numbered.length > 0) return numbered.sort((a, b) => b.n - a.n).map((x) => join(dir, x.name));
  const dated = await Promise.all(names.map(async (name) => ({ name, mtime: (await stat(join(dir, name)).catch(() => undefined))?.mtimeMs ?? Infinity })));
  return dated.sort((a, b) => a.mtime - b.mtime).map((x) => join(dir, x.name));
}

/** Not a compressed rotated file, nor kubelet's half-written gzip of one (`.tmp`). */
export function isPlainLog(name: string): boolean {
  return !name.endsWith(".gz") && !name.endsWith(".tmp");
}
