/**
 * Test helpers for tests that need REAL systemd journal files.
 *
 * Real peers only: Debian's systemd-journal-remote turns journal export format into journal files,
 * journalctl reads them back (the oracle), systemd-journal-gatewayd serves them over HTTP. Nothing here needs
 * a running journald. Facts these helpers rely on (systemd 252, Debian 12) are listed in the report that
 * came with this file; the important ones are repeated next to the code that depends on them.
 *
 * Journal export format (https://systemd.io/JOURNAL_EXPORT_FORMATS/):
 *   entry   = *field LF                      ; an empty line ends an entry
 *   field   = text-field / binary-field
 *   text    = NAME "=" VALUE LF              ; VALUE has no LF
 *   binary  = NAME LF u64le(len) BYTES LF
 */
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export type ExportField = [name: string, value: string | Uint8Array];

/** Paths of the Debian binaries (package systemd-journal-remote). */
const JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote";
const JOURNAL_GATEWAYD = "/lib/systemd/systemd-journal-gatewayd";
/** Package systemd; gatewayd has no port option, it listens on sd_listen_fds() sockets or on *:19531. */
const SOCKET_ACTIVATE = "systemd-socket-activate";

/** _BOOT_ID used by sequenceEntries and by exportText when an entry has none. */
export const DEFAULT_BOOT_ID = "6e6167617265746573740000000b0071";

const enc = new TextEncoder();
const dec = new TextDecoder();
const NL = new Uint8Array([10]);

// ---------------------------------------------------------------------------------------------------------
// Encoding

let lastAutoRealtime = 0n;
let lastAutoMonotonic = 0n;
const hrStart = process.hrtime.bigint();

function autoRealtime(): string {
  let t = BigInt(Date.now()) * 1000n;
  if (t <= lastAutoRealtime) t = lastAutoRealtime + 1n;
  lastAutoRealtime = t;
  return t.toString();
}

function autoMonotonic(): string {
  // Arbitrary but positive and increasing within this process.
  let t = 1_000_000n + (process.hrtime.bigint() - hrStart) / 1000n;
  if (t <= lastAutoMonotonic) t = lastAutoMonotonic + 1n;
  lastAutoMonotonic = t;
  return t.toString();
}

function checkName(name: string): void {
  if (name.length === 0 || name.includes("=") || name.includes("\n")) {
    throw new Error(`exportText: field name ${JSON.stringify(name)} cannot be framed in export format`);
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1 && parts[0] !== undefined && parts[0].length === total) return parts[0];
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Serialize entries into export format as consecutive chunks of roughly `chunkBytes` each. */
function* exportChunks(entries: Iterable<ExportField[]>, chunkBytes = 1 << 20): Generator<Uint8Array> {
  let s = "";
  const parts: Uint8Array[] = [];
  let partsLen = 0;
  const flushString = (): void => {
    if (s.length > 0) {
      const b = enc.encode(s);
      parts.push(b);
      partsLen += b.length;
      s = "";
    }
  };
  const take = (): Uint8Array => {
    flushString();
    const out = concat(parts, partsLen);
    parts.length = 0;
    partsLen = 0;
    return out;
  };
  for (const entry of entries) {
    let hasRealtime = false;
    let hasMonotonic = false;
    let hasBoot = false;
    for (const [name] of entry) {
      if (name === "__REALTIME_TIMESTAMP") hasRealtime = true;
      else if (name === "__MONOTONIC_TIMESTAMP") hasMonotonic = true;
      else if (name === "_BOOT_ID") hasBoot = true;
    }
    if (!hasRealtime) s += `__REALTIME_TIMESTAMP=${autoRealtime()}\n`;
    if (!hasMonotonic) s += `__MONOTONIC_TIMESTAMP=${autoMonotonic()}\n`;
    if (!hasBoot) s += `_BOOT_ID=${DEFAULT_BOOT_ID}\n`;
    for (const [name, value] of entry) {
      checkName(name);
      if (typeof value === "string" && !value.includes("\n")) {
        s += `${name}=${value}\n`;
      } else {
        const bytes = typeof value === "string" ? enc.encode(value) : value;
        s += `${name}\n`;
        flushString();
        const len = new Uint8Array(8);
        new DataView(len.buffer).setBigUint64(0, BigInt(bytes.length), true);
        parts.push(len, bytes, NL);
        partsLen += 9 + bytes.length;
      }
    }
    s += "\n";
    if (s.length + partsLen >= chunkBytes) yield take();
  }
  if (s.length > 0 || partsLen > 0) yield take();
}

/**
 * Serialize entries in journal export format: text `NAME=value\n` when the value is a string with no
 * newline, else binary framing `NAME\n` + u64 LE length + bytes + `\n`; a blank line after each entry.
 * Each entry gets __REALTIME_TIMESTAMP (µs, now), __MONOTONIC_TIMESTAMP and _BOOT_ID (DEFAULT_BOOT_ID)
 * prepended when the caller did not give them. A Uint8Array value is always binary-framed.
 */
export function exportText(entries: ExportField[][]): Uint8Array {
  const chunks = [...exportChunks(entries)];
  return concat(chunks, chunks.reduce((n, c) => n + c.length, 0));
}

/** Parse export format (the oracle side; independent of src/). Text values are strings (UTF-8 decoded),
 *  binary-framed values are Uint8Array. Throws on malformed input. */
export function parseExport(data: Uint8Array): ExportField[][] {
  const entries: ExportField[][] = [];
  let cur: ExportField[] = [];
  let i = 0;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  while (i < data.length) {
    const nl = data.indexOf(10, i);
    if (nl < 0) throw new Error(`parseExport: unterminated line at byte ${i}`);
    if (nl === i) {
      if (cur.length > 0) entries.push(cur);
      cur = [];
      i = nl + 1;
      continue;
    }
    const line = data.subarray(i, nl);
    const eq = line.indexOf(61);
    if (eq >= 0) {
      cur.push([dec.decode(line.subarray(0, eq)), dec.decode(line.subarray(eq + 1))]);
      i = nl + 1;
    } else {
      const name = dec.decode(line);
      if (nl + 9 > data.length) throw new Error(`parseExport: truncated length of ${name}`);
      const len = Number(view.getBigUint64(nl + 1, true));
      const start = nl + 9;
      if (start + len + 1 > data.length || data[start + len] !== 10) {
        throw new Error(`parseExport: bad binary field ${name} at byte ${i}`);
      }
      cur.push([name, data.slice(start, start + len)]);
      i = start + len + 1;
    }
  }
  if (cur.length > 0) entries.push(cur);
  return entries;
}

/** First value of `name` in an entry as a string (binary values are UTF-8 decoded), or undefined. */
export function fieldOf(entry: ExportField[], name: string): string | undefined {
  for (const [n, v] of entry) if (n === name) return typeof v === "string" ? v : dec.decode(v);
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Generated entries

/** Realtime of SEQ=0: one day before this module was loaded; entry `seq` is at BASE + seq ms. */
const SEQUENCE_BASE_REALTIME_US = (BigInt(Date.now()) - 86_400_000n) * 1000n;

const WORDS = (
  "request completed upstream status latency bytes client worker connection accepted closed " +
  "retrying timeout cache hit miss handler route backend session token refreshed queue depth"
).split(" ");

function message(seq: number, bytes: number): string {
  let s = `seq=${seq}`;
  let k = seq;
  while (s.length < bytes) {
    k = (Math.imul(k, 1103515245) + 12345) >>> 0;
    s += ` ${WORDS[k % WORDS.length] ?? "x"}`;
  }
  return s.length > bytes ? s.slice(0, Math.max(bytes, `seq=${seq}`.length)) : s;
}

/**
 * n realistic entries with a unique decimal SEQ field from `from` to `from + n - 1`, MESSAGE of about
 * `messageBytes` (default 120) ASCII bytes starting with `seq=N`, realtime SEQUENCE_BASE_REALTIME_US +
 * seq ms (so consecutive calls with increasing `from` keep increasing), monotonic seq ms + 1 s,
 * _BOOT_ID `opts.bootId` (default DEFAULT_BOOT_ID), and the usual trusted and syslog fields.
 * `extra(seq)` fields are appended.
 */
export function sequenceEntries(
  from: number,
  n: number,
  opts?: { messageBytes?: number; extra?: (seq: number) => ExportField[]; bootId?: string },
): ExportField[][] {
  const messageBytes = opts?.messageBytes ?? 120;
  const bootId = opts?.bootId ?? DEFAULT_BOOT_ID;
  const out: ExportField[][] = new Array(n);
  for (let j = 0; j < n; j++) {
    const seq = from + j;
    const pid = String(1000 + (seq % 7));
    const entry: ExportField[] = [
      ["__REALTIME_TIMESTAMP", (SEQUENCE_BASE_REALTIME_US + BigInt(seq) * 1000n).toString()],
      ["__MONOTONIC_TIMESTAMP", (1_000_000n + BigInt(seq) * 1000n).toString()],
      ["_BOOT_ID", bootId],
      ["_MACHINE_ID", "6e616761726574657374686f73740001"],
      ["_HOSTNAME", "nagare-test-host"],
      ["_TRANSPORT", "syslog"],
      ["PRIORITY", seq % 10 === 0 ? "4" : "6"],
      ["SYSLOG_FACILITY", "3"],
      ["SYSLOG_IDENTIFIER", "nagare-test"],
      ["SYSLOG_PID", pid],
      ["_PID", pid],
      ["_UID", "0"],
      ["_GID", "0"],
      ["_COMM", "nagare-test"],
      ["_EXE", "/usr/bin/nagare-test"],
      ["_CMDLINE", "/usr/bin/nagare-test --serve"],
      ["_SYSTEMD_UNIT", "nagare-test.service"],
      ["_SYSTEMD_CGROUP", "/system.slice/nagare-test.service"],
      ["SEQ", String(seq)],
      ["MESSAGE", message(seq, messageBytes)],
    ];
    if (opts?.extra) entry.push(...opts.extra(seq));
    out[j] = entry;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Processes

type Proc = ReturnType<typeof Bun.spawn>;

/** Await exit within `ms`; on timeout SIGKILL, reap, and throw. */
async function exitedWithin(proc: Proc, ms: number, what: string): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((res) => {
    timer = setTimeout(() => res("timeout"), ms);
  });
  try {
    const r = await Promise.race([proc.exited, timedOut]);
    if (r !== "timeout") return r;
  } finally {
    clearTimeout(timer);
  }
  proc.kill("SIGKILL");
  await proc.exited;
  throw new Error(`${what}: did not finish within ${ms} ms (killed)`);
}

async function readAll(stream: ReadableStream<Uint8Array> | number | undefined | null): Promise<Uint8Array> {
  if (stream === undefined || stream === null || typeof stream === "number") return new Uint8Array(0);
  return new Response(stream).bytes();
}

const dirLocks = new Map<string, Promise<void>>();

/** Run fn exclusively per key (two systemd-journal-remote processes must not write one file at once). */
async function exclusive(key: string, fn: () => Promise<void>): Promise<void> {
  const prev = dirLocks.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const settled = run.then(
    () => undefined,
    () => undefined,
  );
  dirLocks.set(key, settled);
  try {
    await run;
  } finally {
    if (dirLocks.get(key) === settled) dirLocks.delete(key);
  }
}

let tmpCounter = 0;

/**
 * Write entries into real journal files under `dir` (created if missing) with systemd-journal-remote
 * `--output=DIR/<name>.journal` (name defaults to "test"; systemd-journal-remote requires the .journal
 * suffix). Calling it again on the same dir appends to the same journal (same seqnum id, cursors continue);
 * followers (`journalctl --follow`, gatewayd `?follow`) see the appended entries. When the active file
 * is full systemd-journal-remote rotates it to `<name>@<seqnum_id>-<first seqnum>-<first realtime>.journal`
 * in the same dir (every ~87k entries of sequenceEntries' size); journalctl -D reads all of them.
 * Returns after systemd-journal-remote exited, i.e. the files are closed and readable. The export stream
 * goes through a temp file, so 500,000 entries take ~8 s and constant memory on the generating side.
 */
export async function writeJournal(
  dir: string,
  entries: ExportField[][] | Uint8Array,
  opts?: { name?: string; timeoutMs?: number },
): Promise<void> {
  const absDir = resolve(dir);
  mkdirSync(absDir, { recursive: true });
  const name = opts?.name ?? "test";
  const timeoutMs = opts?.timeoutMs ?? 300_000;
  await exclusive(absDir, async () => {
    const tmp = join(tmpdir(), `nagare-export-${process.pid}-${++tmpCounter}-${Date.now()}.export`);
    try {
      if (entries instanceof Uint8Array) {
        await Bun.write(tmp, entries);
      } else {
        const fd = openSync(tmp, "w");
        try {
          for (const chunk of exportChunks(entries)) {
            let off = 0;
            while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
          }
        } finally {
          closeSync(fd);
        }
      }
      const proc = Bun.spawn({
        // --split-mode=none is the default for file input; explicit in case journal-remote.conf says SplitMode=host.
        cmd: [JOURNAL_REMOTE, "--split-mode=none", `--output=${join(absDir, `${name}.journal`)}`, tmp],
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      });
      const errText = readAll(proc.stderr).then((b) => dec.decode(b));
      const code = await exitedWithin(proc, timeoutMs, "systemd-journal-remote");
      const stderr = await errText;
      if (code !== 0) throw new Error(`systemd-journal-remote exited ${code}: ${stderr.trim()}`);
      if (!(entries instanceof Uint8Array)) {
        const m = /Finishing after writing (\d+) entries/.exec(stderr);
        const written = m?.[1] !== undefined ? Number(m[1]) : NaN;
        if (written !== entries.length) {
          throw new Error(
            `systemd-journal-remote wrote ${written} of ${entries.length} entries: ${stderr.trim()}`,
          );
        }
      }
    } finally {
      rmSync(tmp, { force: true });
    }
  });
}

/**
 * `journalctl -D dir -o export --all --no-pager ...extraArgs` → raw bytes (the tests' oracle).
 * Throws on a non-zero exit (e.g. dir does not exist). An empty dir gives empty output. Do not pass
 * --follow here (it never returns).
 */
export async function journalctlExport(
  dir: string,
  extraArgs: string[] = [],
  timeoutMs = 120_000,
): Promise<Uint8Array> {
  const proc = Bun.spawn({
    cmd: ["journalctl", "-D", dir, "-o", "export", "--all", "--no-pager", ...extraArgs],
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, SYSTEMD_PAGER: "", PAGER: "cat", SYSTEMD_COLORS: "0" },
  });
  const out = readAll(proc.stdout);
  const err = readAll(proc.stderr);
  const code = await exitedWithin(proc, timeoutMs, "journalctl");
  const [bytes, errBytes] = await Promise.all([out, err]);
  if (code !== 0) throw new Error(`journalctl -D ${dir} exited ${code}: ${dec.decode(errBytes).trim()}`);
  return bytes;
}

const liveProcs = new Set<Proc>();
process.on("exit", () => {
  for (const p of liveProcs) {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

function freeLoopbackPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/**
 * Start systemd-journal-gatewayd serving journal files in `dir` (-D; must exist, may be empty) on a free
 * 127.0.0.1 port. gatewayd has no listen option: it is started as
 * `systemd-socket-activate -l 127.0.0.1:PORT /lib/systemd/systemd-journal-gatewayd -D DIR`
 * (socket-activate binds, prints "Listening on 127.0.0.1:PORT as 3." and execs gatewayd in the same pid on
 * the first connection). Retries with another port if the bind fails. Ready when a probe request
 * `GET /entries` (Range: entries=:0:1) answered 200. stop() sends SIGTERM (SIGKILL after 5 s) and reaps.
 */
export async function startGatewayd(
  dir: string,
  timeoutMs = 10_000,
  fixedPort?: number,
): Promise<{ url: string; pid: number; stderr(): string; stop(): Promise<void> }> {
  const absDir = resolve(dir);
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (let attempt = 0; attempt < 5 && Date.now() < deadline; attempt++) {
    const port = fixedPort ?? freeLoopbackPort();
    const proc = Bun.spawn({
      cmd: [SOCKET_ACTIVATE, "-l", `127.0.0.1:${port}`, JOURNAL_GATEWAYD, "-D", absDir],
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    liveProcs.add(proc);
    let stderrText = "";
    let listening: () => void = () => {};
    const listeningP = new Promise<void>((res) => {
      listening = res;
    });
    // Keep draining stderr for the life of the process (bounded copy kept for messages).
    const drained = (async () => {
      const reader = proc.stderr.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        stderrText += dec.decode(value, { stream: true });
        if (stderrText.length > 65536) stderrText = stderrText.slice(-32768);
        if (stderrText.includes(`Listening on 127.0.0.1:${port} `)) listening();
      }
    })();
    let stopped = false;
    const stop = async (): Promise<void> => {
      if (stopped) {
        await proc.exited;
        return;
      }
      stopped = true;
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      try {
        await exitedWithin(proc, 5_000, "systemd-journal-gatewayd stop");
      } catch {
        // killed with SIGKILL and reaped by exitedWithin
      }
      await drained.catch(() => undefined);
      liveProcs.delete(proc);
    };
    const r = await Promise.race([
      listeningP.then(() => "listening" as const),
      proc.exited.then(() => "exited" as const),
      Bun.sleep(Math.max(0, deadline - Date.now())).then(() => "timeout" as const),
    ]);
    if (r !== "listening") {
      await stop();
      lastError = r === "timeout" ? `no "Listening on" within ${timeoutMs} ms: ${stderrText}` : stderrText;
      if (r === "exited" && /Address already in use/.test(stderrText)) continue;
      break;
    }
    const url = `http://127.0.0.1:${port}`;
    try {
      // Probe: any entries request proves gatewayd (not only the socket) is up and can open the directory.
      const left = Math.max(1000, deadline - Date.now());
      const res = await fetch(`${url}/entries`, {
        headers: { Accept: "application/vnd.fdo.journal", Range: "entries=:0:1" },
        signal: AbortSignal.timeout(left),
      });
      const body = await res.text();
      if (res.status !== 200) throw new Error(`probe GET /entries answered ${res.status}: ${body.trim()}`);
    } catch (e) {
      await stop();
      throw new Error(`systemd-journal-gatewayd -D ${absDir} did not come up: ${String(e)}; stderr: ${stderrText}`);
    }
    return { url, pid: proc.pid, stderr: () => stderrText, stop };
  }
  throw new Error(`could not start systemd-journal-gatewayd -D ${absDir}: ${lastError.trim()}`);
}
