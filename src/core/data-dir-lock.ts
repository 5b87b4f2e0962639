/**
 * One agent per data directory. Two agents on one data_dir would ship everything twice and overwrite each
 * other's checkpoints, so the first takes an exclusive flock(2) on `<data_dir>/lock` and holds it until it
 * stops. The kernel drops the lock when the process dies, even by SIGKILL, so a crash never leaves a stale
 * lock behind (a pid file alone would). The holder writes its pid into the file so that the second agent can
 * name it. The descriptor is opened close-on-exec: journalctl children must not inherit, and so keep, the lock.
 */
import { dlopen, FFIType, read } from "bun:ffi";
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { NagareError } from "./errors.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

let libc: { flock: (fd: number, op: number) => number; errno: () => number } | undefined;

function flockCall(): NonNullable<typeof libc> {
  if (libc !== undefined) return libc;
  const lib = dlopen("libc.so.6", {
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  libc = { flock: lib.symbols.flock, errno: () => read.i32(lib.symbols.__errno_location()!, 0) };
  return libc;
}

export class DataDirLock {
  readonly path: string;
  private fd: number | undefined;

  constructor(readonly dataDir: string) {
    this.path = join(dataDir, "lock");
  }

  /** Takes the lock or throws DATA_DIR_LOCKED naming the holder's pid. Idempotent while held. */
  acquire(): void {
    if (this.fd !== undefined) return;
    let fd: number;
    try {
      mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
      fd = openSync(this.path, "a+", 0o600);
    } catch (err) {
      throw new NagareError("CHECKPOINT_IO", `cannot open the lock file ${this.path} in the data directory`, { cause: err });
    }
    const { flock, errno } = flockCall();
    if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      const code = errno();
      closeSync(fd);
      if (code !== EWOULDBLOCK) throw new NagareError("CHECKPOINT_IO", `cannot lock ${this.path} (flock failed with errno ${code})`);
      throw new NagareError("DATA_DIR_LOCKED", `the data directory ${this.dataDir} is in use by another nagare (${holderOf(this.path)}); run one agent per data_dir, or give this one its own data_dir`);
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`);
    this.fd = fd;
  }

  /** Releases the lock (closing the descriptor drops it); the file stays, with a pid nobody holds. */
  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

function holderOf(path: string): string {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? `pid ${pid}` : "pid unknown";
  } catch {
    return "pid unknown";
  }
}
