/**
 * Following a rotation chain: which file comes after the one just read to its end. Rotated files may have been
 * gzipped meanwhile (kubelet: every rotated file but the newest; dockerd compress=true: each one right after its
 * rotation), so names are compared without `.gz`, and a compressed next file is read through GzipLogFile.
 *
 *   dockerd:  x.log.3(.gz) → x.log.2(.gz) → x.log.1(.gz) → x.log          (numbered: the next lower number)
 *   kubelet:  0.log.20240102-030405(.gz) → 0.log.20240102-031005 → 0.log  (dated: the next later date)
 *   others:   the oldest plain sibling modified after ours
 *
 * By name, not by modification time where the names say it, because files written in one burst share their
 * modification time, and gzip gives the compressed file a new one.
 */
import { stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { chainNames, isPlainLog, locate, type FileIdentity, type LogFile } from "./files.ts";
import type { FileGuard } from "./guard.ts";
import { findCompressed, GzipLogFile } from "./gzip-file.ts";

const NUMBERED = /^\.(\d+)$/;
const DATED = /^\.\d{8}-\d{6}$/;

/**
 * The file to read after `identity`, open; undefined when there is none yet. Checked after opening: if our own
 * file was renamed meanwhile (the writer rotated again), choose again.
 */
export async function openNextAfter(identity: FileIdentity, lastModifiedMs: number, guard: FileGuard): Promise<LogFile | undefined> {
  const dir = dirname(identity.path);
  const base = basename(identity.path);
  for (let attempt = 0; attempt < 5; attempt++) {
    const ours = await nameOf(identity, guard);
    if (ours === base) return undefined; // we are the newest file
    const suffix = ours?.slice(base.length);
    let next: string | undefined;
    if (suffix !== undefined && NUMBERED.test(suffix)) {
      const n = Number(suffix.slice(1));
      next = n <= 1 ? base : `${base}.${n - 1}`;
    } else if (ours !== undefined && DATED.test(suffix!)) {
      next = nextDated(dir, base, ours);
    } else {
      next = await oldestModifiedAfter(dir, base, ours, lastModifiedMs);
    }
    if (next === undefined) return undefined;
    const file = await openEitherWay(join(dir, next), guard);
    if (file === undefined) continue;
    // Still where we were? Then no rotation happened in between and the file opened is the next one.
    if (ours === undefined || (await nameOf(identity, guard)) === ours) return file;
    await file.close();
  }
  return undefined;
}

/** The name `identity`'s file has now, without `.gz` if it was compressed; undefined when it is gone. */
async function nameOf(identity: FileIdentity, guard: FileGuard): Promise<string | undefined> {
  const plain = await locate(identity, guard);
  if (plain !== undefined) {
    await plain.file.close();
    return plain.name;
  }
  const compressed = await findCompressed(identity, 0, 0, guard);
  if (compressed === undefined) return undefined;
  await compressed.close();
  return basename(compressed.path).slice(0, -".gz".length);
}


/** The plain file at `path`, else its gzipped copy `path.gz` read as plain. */
async function openEitherWay(path: string, guard: FileGuard): Promise<LogFile | undefined> {
  const plain = await guard.open(path);
  if (plain !== undefined) return plain;
  const gz = await stat(`${path}.gz`).catch(() => undefined);
  if (gz === undefined) return undefined;
  return GzipLogFile.open(`${path}.gz`, { dev: gz.dev, ino: gz.ino, mtimeMs: gz.mtimeMs }, guard);
}

/** The dated sibling right after `ours` (dates sort as text), else the current file. */
function nextDated(dir: string, base: string, ours: string): string {
  const later = chainNames(join(dir, base))
    .map((name) => (name.endsWith(".gz") ? name.slice(0, -".gz".length) : name))
    .filter((name) => DATED.test(name.slice(base.length)) && name > ours)
    .sort();
  return later[0] ?? base;
}

/** Order inside a chain for files with equal modification times: higher numbers are older, the path is newest. */
function chainRank(name: string, base: string): number {
  if (name === base) return Number.MAX_SAFE_INTEGER;
  const n = NUMBERED.exec(name.slice(base.length));
  return n ? -Number(n[1]) : 0;
}

async function oldestModifiedAfter(dir: string, base: string, ours: string | undefined, lastModifiedMs: number): Promise<string | undefined> {
  const names = chainNames(join(dir, base)).filter(isPlainLog);
  const stats = await Promise.all(names.map(async (name) => ({ name, st: await stat(join(dir, name)).catch(() => undefined) })));
  const newer = stats
    .filter((s) => s.st !== undefined && s.name !== ours && s.st.mtimeMs >= lastModifiedMs)
    .sort((a, b) => a.st!.mtimeMs - b.st!.mtimeMs || chainRank(a.name, base) - chainRank(b.name, base) || (a.name < b.name ? -1 : 1));
  return newer[0]?.name;
}
