/**
 * Writes container log directories the way dockerd (json-file driver) and containerd (CRI format) do, for tests of
 * the docker source. Byte-exact where it matters to a reader:
 *
 * - json-file entries (moby daemon/logger/jsonfilelog): `{"log":…,"stream":…[,"attrs":…],"time":…}` + "\n", no
 *   spaces, `log` escaped byte by byte as dockerd does (`<` `>` `&` → \u003c \u003e \u0026, control bytes other
 *   than \n \r → \u00XX, U+2028/U+2029 escaped, invalid UTF-8 → \ufffd), time in UTC with the fraction's trailing
 *   zeros dropped (Go RFC3339Nano). The copier's 16 KiB buffer: a line of L >= 16384 bytes is written as pieces of
 *   exactly 16384 bytes without "\n" while at least 16384 bytes remain, then a last piece of the rest plus "\n"
 *   (possibly just "\n"). The cut is by bytes, so a multi-byte character cut in two becomes \ufffd on both sides
 *   (as in dockerd). All pieces carry the first piece's time.
 * - CRI lines (containerd pkg/cri/io/logger.go): `<time> <stream> <P|F> <message>\n`, the message raw (not
 *   escaped), a line longer than max_container_log_line_size (16384) cut into P pieces of exactly that many bytes
 *   while more than that remain, then F; "\r\n" endings lose the "\r". Times in UTC here (containerd uses the
 *   host's zone), each piece its own time when none is given.
 * - Rotation by rename (dockerd loggerutils.LogFile): before writing an entry (one piece), when the current file
 *   already holds >= max-size bytes: delete `.N-1`, shift `.i-1` → `.i`, rename the file to `.1` and create a new
 *   empty file under the same name (with max-file 1: delete the file and create it anew). A file therefore exceeds
 *   max-size by up to one entry, and the pieces of one split line can end up in two files.
 * - Rotation by copytruncate (logrotate): shift as above, copy the file to `.1`, truncate it in place (same inode;
 *   the writer appends with O_APPEND so it continues at offset 0).
 * - Kubernetes (`pod`): kubelet's layout `<root>/<namespace>_<pod>_<uid>/<container>/<restart>.log`, CRI lines, no
 *   config.v2.json. Rotation as kubelet's containerLogManager does it (pkg/kubelet/logs): delete the oldest rotated
 *   files beyond max-files - 2, gzip every rotated file still plain (through `<name>.tmp`, then rename to `.gz` and
 *   delete the plain one), rename the current file to `<name>.<YYYYMMDD-HHMMSS>` and have the runtime reopen the
 *   path (a new file). So the newest rotated file stays plain until the next rotation.
 * - Metadata: `config.v2.json` in the shape dockerd writes it (one line, `"Name":"/<name>"`, `Config.Image`,
 *   `Config.Labels`, `LogPath` …), replaced atomically like dockerd (written to `.tmp-config.v2.json<digits>` in
 *   the same directory, then renamed over it); plus `hostconfig.json` with the LogConfig.
 */
import { isAscii } from "node:buffer";
import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { gzipSync } from "node:zlib";

/** dockerd's copier buffer: longer lines are split into pieces of this many bytes. */
export const DOCKER_SPLIT_BYTES = 16 * 1024;
/** containerd's default max_container_log_line_size. */
export const CRI_MAX_LINE_BYTES = 16 * 1024;

export type Stream = "stdout" | "stderr";

export interface ContainerWriterOptions {
  root: string;
  /** 64 hex digits; random by default. */
  id?: string;
  /** Without the leading "/"; default "test-<first 12 of id>". */
  name?: string;
  image?: string;
  labels?: Record<string, string>;
  format?: "json-file" | "cri";
  /**
   * max-size: as dockerd does, an entry is written to a new file when the current one already holds at least this
   * many bytes (so a file may exceed it by one entry). Unset: never rotates by itself.
   */
  maxSize?: number;
  /** max-file: files kept, the current one included: <id>-json.log, .1, .2 … (default 1, as dockerd). */
  maxFiles?: number;
  rotation?: "rename" | "copytruncate";
  /**
   * --log-opt compress=true (rename rotation, maxFiles >= 2): rotated files are kept as `.N.gz`. dockerd gzips the
   * freshly rotated `.1` in the background right after the rename and then deletes `.1`; here that happens at once,
   * inside the rotation, so a reader that has not kept `.1` open loses its rest.
   */
  compress?: boolean;
  /** json-file `attrs` (what --log-opt labels/env/tag add to every entry). */
  attrs?: Record<string, string>;
  /** CRI: containerd's max_container_log_line_size (default 16384; 0 or less: no limit). */
  criMaxLineBytes?: number;
  /** Write as a Kubernetes container (kubelet's layout and rotation, CRI format); `rotation`/`compress` do not apply. */
  pod?: PodContainer;
}

export interface PodContainer {
  namespace: string;
  name: string;
  /** The pod's UID; random by default. */
  uid?: string;
  container: string;
  /** The container's restart count, the log file's name (default 0). */
  restart?: number;
}

export interface ContainerMetadata {
  name?: string;
  image?: string;
  labels?: Record<string, string>;
}

/** Epoch nanoseconds now, with sub-millisecond digits as dockerd's timestamps have them. */
const HR_BASE = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
function nowNs(): bigint {
  return HR_BASE + process.hrtime.bigint();
}

/** Go's time.RFC3339Nano of a UTC time: 2024-01-02T03:04:05.123456789Z, trailing fraction zeros dropped. */
export function formatGoTime(t: Date | bigint): string {
  const ns = typeof t === "bigint" ? t : BigInt(t.getTime()) * 1_000_000n;
  const sec = ns / 1_000_000_000n - (ns % 1_000_000_000n < 0n ? 1n : 0n);
  const frac = Number(ns - sec * 1_000_000_000n);
  const base = new Date(Number(sec) * 1000).toISOString().slice(0, 19);
  if (frac === 0) return `${base}Z`;
  return `${base}.${String(frac).padStart(9, "0").replace(/0+$/, "")}Z`;
}

// ---- json-file entries -----------------------------------------------------------------------------------

/** 1 for the ASCII bytes dockerd's JSON string writer escapes. */
const ESCAPE = new Uint8Array(128);
for (let c = 0; c < 128; c++) ESCAPE[c] = c < 0x20 || c === 0x22 || c === 0x5c || c === 0x3c || c === 0x3e || c === 0x26 ? 1 : 0;
const HEX = "0123456789abcdef";

/** Go's utf8.DecodeRune: [rune, size], or [-1, 1] for an invalid or incomplete sequence. */
function decodeRune(b: Uint8Array, i: number): [number, number] {
  const c0 = b[i]!;
  const n = b.length - i;
  const cont = (k: number): number => {
    const c = b[i + k];
    return c !== undefined && (c & 0xc0) === 0x80 ? c & 0x3f : -1;
  };
  if (c0 >= 0xc2 && c0 <= 0xdf && n >= 2) {
    const c1 = cont(1);
    if (c1 >= 0) return [((c0 & 0x1f) << 6) | c1, 2];
  } else if (c0 >= 0xe0 && c0 <= 0xef && n >= 3) {
    const c1 = cont(1);
    const c2 = cont(2);
    if (c1 >= 0 && c2 >= 0) {
      const r = ((c0 & 0x0f) << 12) | (c1 << 6) | c2;
      if (r >= 0x800 && (r < 0xd800 || r > 0xdfff)) return [r, 3];
    }
  } else if (c0 >= 0xf0 && c0 <= 0xf4 && n >= 4) {
    const c1 = cont(1);
    const c2 = cont(2);
    const c3 = cont(3);
    if (c1 >= 0 && c2 >= 0 && c3 >= 0) {
      const r = ((c0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3;
      if (r >= 0x10000 && r <= 0x10ffff) return [r, 4];
    }
  }
  return [-1, 1];
}

/** dockerd's ffjsonWriteJSONBytesAsString: the bytes as a JSON string literal (quotes included). */
export function dockerJsonString(b: Uint8Array): string {
  if (isAscii(b)) {
    let plain = true;
    for (let i = 0; i < b.length; i++) {
      if (ESCAPE[b[i]!] === 1) {
        plain = false;
        break;
      }
    }
    if (plain) return `"${Buffer.from(b.buffer, b.byteOffset, b.length).toString("latin1")}"`;
  }
  const out: string[] = ['"'];
  let start = 0;
  const flush = (end: number): void => {
    if (start < end) out.push(Buffer.from(b.buffer, b.byteOffset + start, end - start).toString("utf8"));
  };
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    if (c < 0x80) {
      if (ESCAPE[c] === 0) {
        i++;
        continue;
      }
      flush(i);
      if (c === 0x22 || c === 0x5c) out.push("\\" + String.fromCharCode(c));
      else if (c === 0x0a) out.push("\\n");
      else if (c === 0x0d) out.push("\\r");
      else out.push("\\u00" + HEX[c >> 4]! + HEX[c & 0xf]!);
      start = ++i;
      continue;
    }
    const [r, size] = decodeRune(b, i);
    if (r < 0) {
      flush(i);
      out.push("\\ufffd");
      start = i += size;
      continue;
    }
    if (r === 0x2028 || r === 0x2029) {
      flush(i);
      out.push("\\u202" + HEX[r & 0xf]!);
      start = i += size;
      continue;
    }
    i += size;
  }
  flush(b.length);
  out.push('"');
  return out.join("");
}

/** One json-file entry (with its newline) as dockerd marshals it. `log` is the bytes, newline included if any. */
export function jsonFileEntry(log: Uint8Array, stream: string, time: string, attrsJson?: string): Buffer {
  let s = "{";
  if (log.length > 0) s += `"log":${dockerJsonString(log)},`;
  s += `"stream":${dockerJsonString(Buffer.from(stream))},`;
  if (attrsJson !== undefined) s += `"attrs":${attrsJson},`;
  s += `"time":"${time}"}\n`;
  return Buffer.from(s, "utf8");
}

/** The entries dockerd writes for one line of output (`line`: without its newline). */
function jsonFileEntries(line: Uint8Array, stream: string, time: string, attrsJson?: string): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (line.length - p >= DOCKER_SPLIT_BYTES) {
    out.push(jsonFileEntry(line.subarray(p, p + DOCKER_SPLIT_BYTES), stream, time, attrsJson));
    p += DOCKER_SPLIT_BYTES;
  }
  const last = new Uint8Array(line.length - p + 1);
  last.set(line.subarray(p));
  last[last.length - 1] = 0x0a;
  out.push(jsonFileEntry(last, stream, time, attrsJson));
  return out;
}

/** dockerd's attrs: a JSON object with sorted keys (Go's json.Marshal of a map). */
function attrsJson(attrs: Record<string, string> | undefined): string | undefined {
  if (attrs === undefined || Object.keys(attrs).length === 0) return undefined;
  const sorted: Record<string, string> = {};
  for (const k of Object.keys(attrs).sort()) sorted[k] = attrs[k]!;
  // Go escapes <, >, & in strings; so does dockerJsonString
  const parts = Object.keys(sorted).map((k) => `${dockerJsonString(Buffer.from(k))}:${dockerJsonString(Buffer.from(sorted[k]!))}`);
  return `{${parts.join(",")}}`;
}

// ---- CRI lines ---------------------------------------------------------------------------------------------

/** The lines containerd writes for one line of output (`line`: without its newline). */
function criEntries(line: Uint8Array, stream: string, time: () => string, maxLen = CRI_MAX_LINE_BYTES): Buffer[] {
  let msg = line;
  if (msg.length > 0 && msg[msg.length - 1] === 0x0d) msg = msg.subarray(0, msg.length - 1); // "\r\n"
  const out: Buffer[] = [];
  let p = 0;
  if (maxLen > 0) {
    while (msg.length - p > maxLen) {
      out.push(criEntry(msg.subarray(p, p + maxLen), stream, "P", time()));
      p += maxLen;
    }
  }
  out.push(criEntry(msg.subarray(p), stream, "F", time()));
  return out;
}

export function criEntry(msg: Uint8Array, stream: string, tag: "P" | "F", time: string): Buffer {
  const head = Buffer.from(`${time} ${stream} ${tag} `, "latin1");
  const out = Buffer.allocUnsafe(head.length + msg.length + 1);
  head.copy(out, 0);
  out.set(msg, head.length);
  out[out.length - 1] = 0x0a;
  return out;
}

// ---- the container --------------------------------------------------------------------------------------------

export class ContainerWriter {
  readonly id: string;
  readonly dir: string;
  readonly path: string;
  readonly format: "json-file" | "cri";
  private readonly maxSize: number | undefined;
  private readonly maxFiles: number;
  private readonly rotation: "rename" | "copytruncate" | "kubelet";
  /** kubelet: the time in the last rotated file's name, kept unique (one rotation per second at most in real life). */
  private lastRotatedSecond = 0;
  private readonly compress: boolean;
  private readonly attrs: string | undefined;
  private readonly criMax: number;
  private readonly created: string;
  private meta: { name: string; image: string; labels: Record<string, string> };
  private fd: number | undefined;
  private size = 0;
  /** Entries waiting for the batch's single write. */
  private batch: Buffer[] = [];
  private batchBytes = 0;
  /** Rotations so far. */
  rotations = 0;

  constructor(opts: ContainerWriterOptions) {
    this.id = opts.id ?? randomBytes(32).toString("hex");
    if (!/^[0-9a-f]{64}$/.test(this.id)) throw new Error(`container id must be 64 hex digits: ${this.id}`);
    this.format = opts.pod !== undefined ? "cri" : (opts.format ?? "json-file");
    if (opts.pod !== undefined) {
      const { namespace, name, uid = randomUUID(), container, restart = 0 } = opts.pod;
      this.dir = join(opts.root, `${namespace}_${name}_${uid}`, container);
      this.path = join(this.dir, `${restart}.log`);
    } else {
      this.dir = join(opts.root, this.id);
      this.path = join(this.dir, this.format === "cri" ? `${this.id}.log` : `${this.id}-json.log`);
    }
    this.maxSize = opts.maxSize;
    this.maxFiles = Math.max(1, Math.floor(opts.maxFiles ?? 1));
    this.rotation = opts.pod !== undefined ? "kubelet" : (opts.rotation ?? "rename");
    this.compress = (opts.compress ?? false) && this.rotation === "rename" && this.maxFiles >= 2;
    this.attrs = attrsJson(opts.attrs);
    this.criMax = opts.criMaxLineBytes ?? CRI_MAX_LINE_BYTES;
    this.created = formatGoTime(nowNs());
    this.meta = {
      name: opts.name ?? `test-${this.id.slice(0, 12)}`,
      image: opts.image ?? "busybox:latest",
      labels: { ...(opts.labels ?? {}) },
    };
    mkdirSync(this.dir, { recursive: true, mode: 0o710 });
    if (this.rotation !== "kubelet") this.writeConfig();
    if (this.format === "json-file") this.writeHostConfig();
    this.fd = openSync(this.path, "a", 0o640);
  }

  /** Bytes in the current log file. */
  get currentSize(): number {
    return this.size;
  }

  /**
   * One line of output (`text` without its newline; "\n" inside it makes several lines, as the container would
   * have written them), as dockerd/containerd write it. `time`: a Date (millisecond precision), a ready time
   * string, or by default now with nanoseconds.
   */
  write(text: string | Uint8Array, stream: Stream = "stdout", time?: Date | string): void {
    this.queueLine(text, stream, time);
    this.flushBatch();
  }

  /** Many lines of stdout, one write syscall per batch (split only where a rotation falls). */
  writeMany(lines: string[], stream: Stream = "stdout", time?: Date | string): void {
    for (const line of lines) this.queueLine(line, stream, time);
    this.flushBatch();
  }

  /** Appends raw bytes as they are (corrupt lines, an interrupted write); no rotation check. */
  writeRaw(bytes: string | Uint8Array): void {
    this.flushBatch();
    const b = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
    this.writeOut(b);
  }

  /** Rotates now, in the configured mode. */
  rotate(): void {
    this.flushBatch();
    if (this.rotation === "kubelet") return this.rotateAsKubelet();
    const fd = this.openFd();
    const shift = this.maxFiles >= 2;
    if (shift) {
      const gz = this.compress ? ".gz" : "";
      tryUnlink(`${this.path}.${this.maxFiles - 1}${gz}`);
      for (let i = this.maxFiles - 1; i > 1; i--) tryRename(`${this.path}.${i - 1}${gz}`, `${this.path}.${i}${gz}`);
    }
    if (this.rotation === "copytruncate") {
      if (shift) copyFileSync(this.path, `${this.path}.1`);
      ftruncateSync(fd, 0);
    } else {
      closeSync(fd);
      this.fd = undefined;
      if (shift) renameSync(this.path, `${this.path}.1`);
      else tryUnlink(this.path);
      this.fd = openSync(this.path, "w", 0o640); // dockerd: O_WRONLY|O_TRUNC|O_CREATE
      if (this.compress) {
        // dockerd also puts {"lastTime":…} into the gzip header's extra field; node's zlib cannot set it
        writeFileSync(`${this.path}.1.gz`, gzipSync(readFileSync(`${this.path}.1`)), { mode: 0o640 });
        unlinkSync(`${this.path}.1`);
      }
    }
    this.size = 0;
    this.rotations++;
  }

  private rotateAsKubelet(): void {
    const dir = dirname(this.path);
    const base = basename(this.path);
    const rotated = readdirSync(dir)
      .filter((name) => name.startsWith(`${base}.`) && !name.endsWith(".tmp"))
      .sort();
    const keep = Math.max(0, this.maxFiles - 2);
    for (const name of rotated.splice(0, Math.max(0, rotated.length - keep))) tryUnlink(join(dir, name));
    for (const name of rotated) {
      if (name.endsWith(".gz")) continue;
      const plain = join(dir, name);
      writeFileSync(`${plain}.tmp`, gzipSync(readFileSync(plain)), { mode: 0o640 });
      renameSync(`${plain}.tmp`, `${plain}.gz`);
      unlinkSync(plain);
    }
    const second = Math.max(Math.floor(Date.now() / 1000), this.lastRotatedSecond + 1);
    this.lastRotatedSecond = second;
    renameSync(this.path, `${this.path}.${new Date(second * 1000).toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-")}`);
    closeSync(this.openFd()); // containerd's ReopenContainerLog: close the renamed file, create the path anew
    this.fd = openSync(this.path, "a", 0o640);
    this.size = 0;
    this.rotations++;
  }

  /** Rewrites config.v2.json (e.g. the container was renamed), atomically. */
  setMetadata(m: ContainerMetadata): void {
    if (m.name !== undefined) this.meta.name = m.name;
    if (m.image !== undefined) this.meta.image = m.image;
    if (m.labels !== undefined) this.meta.labels = { ...m.labels };
    this.writeConfig();
  }

  /** Closes the log file (the container stopped; its files stay). */
  close(): void {
    this.flushBatch();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Deletes the container directory (docker rm). */
  remove(): void {
    this.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- internals ----

  private queueLine(text: string | Uint8Array, stream: Stream, time: Date | string | undefined): void {
    const bytes = typeof text === "string" ? Buffer.from(text, "utf8") : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
    let from = 0;
    for (;;) {
      const nl = bytes.indexOf(0x0a, from);
      const line = bytes.subarray(from, nl < 0 ? bytes.length : nl);
      const entries =
        this.format === "cri"
          ? criEntries(line, stream, () => timeString(time), this.criMax)
          : jsonFileEntries(line, stream, timeString(time), this.attrs);
      for (const e of entries) this.queueEntry(e);
      if (nl < 0) break;
      from = nl + 1;
    }
  }

  /** dockerd checks the size before each entry: a full file is rotated first. */
  private queueEntry(e: Buffer): void {
    if (this.maxSize !== undefined && this.size + this.batchBytes >= this.maxSize) {
      this.flushBatch();
      this.rotate();
    }
    this.batch.push(e);
    this.batchBytes += e.length;
  }

  private flushBatch(): void {
    if (this.batch.length === 0) return;
    const b = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch, this.batchBytes);
    this.batch = [];
    this.batchBytes = 0;
    this.writeOut(b);
  }

  private writeOut(b: Uint8Array): void {
    const fd = this.openFd();
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
    this.size += b.length;
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error(`container ${this.id.slice(0, 12)} is closed or removed`);
    return this.fd;
  }

  private writeConfig(): void {
    const config = {
      StreamConfig: {},
      State: {
        Running: true,
        Paused: false,
        Restarting: false,
        OOMKilled: false,
        RemovalInProgress: false,
        Dead: false,
        Pid: 4242,
        ExitCode: 0,
        Error: "",
        StartedAt: this.created,
        FinishedAt: "0001-01-01T00:00:00Z",
        Health: null,
      },
      ID: this.id,
      Created: this.created,
      Managed: false,
      Path: "sh",
      Args: ["-c", "exec app"],
      Config: {
        Hostname: this.id.slice(0, 12),
        Domainname: "",
        User: "",
        AttachStdin: false,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
        OpenStdin: false,
        StdinOnce: false,
        Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        Cmd: ["sh", "-c", "exec app"],
        Image: this.meta.image,
        Volumes: null,
        WorkingDir: "",
        Entrypoint: null,
        OnBuild: null,
        Labels: sortKeys(this.meta.labels), // Go marshals maps with sorted keys
      },
      Image: `sha256:${"0".repeat(52)}${this.id.slice(0, 12)}`,
      ImageManifest: null,
      NetworkSettings: { Bridge: "", SandboxID: "", SandboxKey: "", HairpinMode: false, Networks: {}, Service: null, Ports: {} },
      LogPath: this.path,
      Name: `/${this.meta.name}`,
      Driver: "overlay2",
      OS: "linux",
      RestartCount: 0,
      HasBeenStartedBefore: true,
      HasBeenManuallyStopped: false,
      MountPoints: {},
      SecretReferences: null,
      ConfigReferences: null,
      MountLabel: "",
      ProcessLabel: "",
      AppArmorProfile: "",
      SeccompProfile: "",
      NoNewPrivileges: false,
      HostnamePath: join(this.dir, "hostname"),
      HostsPath: join(this.dir, "hosts"),
      ShmPath: "",
      ResolvConfPath: join(this.dir, "resolv.conf"),
      LocalLogCacheMeta: { HaveNotifyEnabled: false },
    };
    atomicWrite(join(this.dir, "config.v2.json"), JSON.stringify(config));
  }

  private writeHostConfig(): void {
    const opts: Record<string, string> = {};
    if (this.maxSize !== undefined && this.rotation === "rename") opts["max-size"] = String(this.maxSize);
    if (this.maxFiles !== 1) opts["max-file"] = String(this.maxFiles);
    if (this.compress) opts.compress = "true";
    atomicWrite(join(this.dir, "hostconfig.json"), JSON.stringify({ LogConfig: { Type: "json-file", Config: opts }, NetworkMode: "bridge" }));
  }
}

function timeString(time: Date | string | undefined): string {
  if (typeof time === "string") return time;
  return formatGoTime(time ?? nowNs());
}

/** dockerd's atomic writer: a temp file in the same directory, then rename over the target. */
function atomicWrite(path: string, data: string): void {
  const tmp = join(dirname(path), `.tmp-${basename(path)}${randomBytes(4).readUInt32LE(0)}`); // os.CreateTemp's name
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

function sortKeys(m: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(m).sort()) out[k] = m[k]!;
  return out;
}

function tryUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

function tryRename(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}
