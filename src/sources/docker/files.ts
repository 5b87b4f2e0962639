/**
 * Identity of a log file across renames and restarts: device and inode, plus a fingerprint of its first bytes,
 * because a deleted file's inode is soon given to a new file and inode equality alone would resume a stranger
 * at the old offset.
 */
import { open, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { readdirSync } from "node:fs";

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

export async function fingerprintOf(file: FileHandle, bytes: number): Promise<string> {
  const buffer = Buffer.alloc(bytes);
  const { bytesRead } = await file.read(buffer, 0, bytes, 0);
  return Bun.CryptoHasher.hash("md5", buffer.subarray(0, bytesRead), "hex") as string;
}

/** The identity of an open file; the fingerprint covers what the file holds now, up to FINGERPRINT_BYTES. */
export async function identify(file: FileHandle, path: string): Promise<FileIdentity> {
  const st = await file.stat();
  const fingerprintBytes = Math.min(st.size, FINGERPRINT_BYTES);
  return { path, dev: st.dev, ino: st.ino, fingerprint: await fingerprintOf(file, fingerprintBytes), fingerprintBytes };
}

/** Whether an open file is the one `identity` describes (same inode, same first bytes). */
export async function isSameFile(file: FileHandle, identity: FileIdentity): Promise<boolean> {
  const st = await file.stat();
  if (st.dev !== identity.dev || st.ino !== identity.ino || st.size < identity.fingerprintBytes) return false;
  return (await fingerprintOf(file, identity.fingerprintBytes)) === identity.fingerprint;
}

/**
 * Finds the file `identity` describes: at its path, or renamed by rotation to a sibling (`x.log.1`, `x.log.2`,
 * dockerd; `x.log.1` / dated names, logrotate). Returns an open handle, or undefined when it is gone.
 */
export async function findFile(identity: FileIdentity): Promise<FileHandle | undefined> {
  const dir = dirname(identity.path);
  const base = basename(identity.path);
  let siblings: string[] = [];
  try {
    siblings = readdirSync(dir).filter((name) => name !== base && name.startsWith(base));
  } catch {
    return undefined;
  }
  for (const candidate of [identity.path, ...siblings.sort().map((name) => join(dir, name))]) {
    const st = await stat(candidate).catch(() => undefined);
    if (st === undefined || st.dev !== identity.dev || st.ino !== identity.ino) continue;
    const file = await open(candidate, "r").catch(() => undefined);
    if (file === undefined) continue;
    if (await isSameFile(file, identity)) return file;
    await file.close();
  }
  return undefined;
}

/**
 * The file to read after `identity` is read to its end. In a numbered chain (dockerd: `x.log.3` → `x.log.2` →
 * `x.log.1` → `x.log`) it is the next lower number — by name, because files written in one burst share their
 * modification time — checked after opening: if our own file was renamed meanwhile (the writer rotated again),
 * choose again. With other names (kubelet's dated ones) it is the oldest sibling modified after ours, ties broken
 * by name. Returns an open handle, or undefined when there is none yet.
 */
export async function openNextAfter(identity: FileIdentity, lastModifiedMs: number): Promise<FileHandle | undefined> {
  const dir = dirname(identity.path);
  const base = basename(identity.path);
  for (let attempt = 0; attempt < 5; attempt++) {
    const ours = await currentName(identity, dir, base);
    let nextName: string | undefined;
    if (ours !== undefined && /^\.\d+$/.test(ours.slice(base.length))) {
      const n = Number(ours.slice(base.length + 1));
      nextName = n <= 1 ? base : `${base}.${n - 1}`;
    } else if (ours === base) {
      return undefined; // we are the newest file
    } else {
      nextName = await oldestModifiedAfter(dir, base, ours, lastModifiedMs);
      if (nextName === undefined) return undefined;
    }
    const file = await open(join(dir, nextName), "r").catch(() => undefined);
    if (file === undefined) continue;
    // Still where we were? Then no rotation happened in between and the file opened is the next one.
    if (ours === undefined || (await currentName(identity, dir, base)) === ours) return file;
    await file.close();
  }
  return undefined;
}

async function currentName(identity: FileIdentity, dir: string, base: string): Promise<string | undefined> {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((name) => name.startsWith(base));
  } catch {
    return undefined;
  }
  for (const name of names) {
    const st = await stat(join(dir, name)).catch(() => undefined);
    if (st === undefined || st.ino !== identity.ino || st.dev !== identity.dev) continue;
    // Same inode is not enough: a deleted file's inode is soon reused by a newer file of the same chain.
    const file = await open(join(dir, name), "r").catch(() => undefined);
    if (file === undefined) continue;
    const same = await isSameFile(file, identity);
    await file.close();
    if (same) return name;
  }
  return undefined;
}

/** Order inside a chain for files with equal modification times: higher numbers are older, the path is newest. */
function chainRank(name: string, base: string): number {
  if (name === base) return Number.MAX_SAFE_INTEGER;
  const n = /^\.(\d+)$/.exec(name.slice(base.length));
  return n ? -Number(n[1]) : 0;
}

async function oldestModifiedAfter(dir: string, base: string, ours: string | undefined, lastModifiedMs: number): Promise<string | undefined> {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((name) => name.startsWith(base) && !name.endsWith(".gz"));
  } catch {
    return undefined;
  }
  const stats = await Promise.all(names.map(async (name) => ({ name, st: await stat(join(dir, name)).catch(() => undefined) })));
  const newer = stats
    .filter((s) => s.st !== undefined && s.name !== ours && s.st.mtimeMs >= lastModifiedMs)
    .sort((a, b) => a.st!.mtimeMs - b.st!.mtimeMs || chainRank(a.name, base) - chainRank(b.name, base));
  return newer[0]?.name;
}

/** A copy of the file (logrotate's copytruncate): a sibling that starts with the same bytes and holds more. */
export async function findCopy(identity: FileIdentity, atLeast: number): Promise<FileHandle | undefined> {
  const dir = dirname(identity.path);
  const base = basename(identity.path);
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((name) => name !== base && name.startsWith(base) && !name.endsWith(".gz"));
  } catch {
    return undefined;
  }
  for (const name of names.sort()) {
    const file = await open(join(dir, name), "r").catch(() => undefined);
    if (file === undefined) continue;
    const st = await file.stat();
    if (st.size >= atLeast && st.size >= identity.fingerprintBytes && (await fingerprintOf(file, identity.fingerprintBytes)) === identity.fingerprint) return file;
    await file.close();
  }
  return undefined;
}

/** The oldest file of a rotation chain (`x.log.N` with the highest N, or the oldest dated sibling), else the path. */
export async function oldestInChain(path: string): Promise<string> {
  const dir = dirname(path);
  const base = basename(path);
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((name) => name !== base && name.startsWith(`${base}.`) && !name.endsWith(".gz"));
  } catch {
    return path;
  }
  if (names.length === 0) return path;
  const numbered = names.map((name) => ({ name, n: Number(/^\.(\d+)$/.exec(name.slice(base.length))?.[1] ?? Number.NaN) })).filter((x) => !Number.isNaN(x.n));
  if (numbered.length > 0) return join(dir, numbered.sort((a, b) => b.n - a.n)[0]!.name);
  const dated = await Promise.all(names.map(async (name) => ({ name, mtime: (await stat(join(dir, name)).catch(() => undefined))?.mtimeMs ?? Infinity })));
  return join(dir, dated.sort((a, b) => a.mtime - b.mtime)[0]!.name);
}
