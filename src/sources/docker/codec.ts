/**
 * Decoders for container log files (Docker's json-file driver, the CRI format written by containerd and CRI-O)
 * and the merge of partial lines into logical records.
 *
 * json-file grammar (moby daemon/logger/jsonfilelog; one entry per line, keys in this order, no spaces):
 *
 *   file    = *( entry %x0A )
 *   entry   = "{" [ %s"\"log\":" string "," ] %s"\"stream\":" string [ "," %s"\"attrs\":" object ]
 *             "," %s"\"time\":" DQUOTE rfc3339nano DQUOTE "}"
 *   log     = the bytes the container wrote up to its newline, with "\n" appended unless the entry is a partial
 *             piece; escaped as JSON (`<` `>` `&` U+2028 U+2029 and control bytes as \u00XX, invalid UTF-8 as
 *             \ufffd), so an entry is always valid UTF-8
 *   stream  = "stdout" / "stderr"
 *   attrs   = string -> string map from --log-opt labels/env/tag (keys sorted); absent when empty
 *   time    = UTC, the fraction's trailing zeros dropped (Go's RFC3339Nano): 2024-01-02T03:04:05.1234567Z
 *
 * dockerd's copier reads the container's output into a 16 KiB buffer; a line that fills the buffer without a
 * newline is written as a partial piece of exactly 16384 bytes whose `log` lacks the trailing "\n". The piece that
 * ends the line carries the newline (a line of exactly 16384 bytes ends with a piece whose `log` is just "\n").
 * All pieces of a line carry the first piece's time; stdout and stderr are copied independently, so their pieces
 * interleave. Each piece is a separate file write, so a rotation may fall between two pieces of one line. A cut
 * inside a multi-byte character is not recoverable: dockerd already replaced both halves by U+FFFD.
 *
 * CRI grammar (kubelet's container log format; containerd pkg/cri/io/logger.go):
 *
 *   file    = *( line %x0A )
 *   line    = time SP stream SP tags SP message
 *   time    = RFC 3339 with up to 9 fraction digits and a zone: containerd writes local time with trailing zeros
 *             dropped (…05.12345Z, …05+09:00), CRI-O always 9 digits
 *   stream  = "stdout" / "stderr"
 *   tags    = tag *( ":" tag )            ; the first tag is "P" (partial, continues) or "F" (full, ends the line)
 *   message = the raw bytes the container wrote, not escaped (may be invalid UTF-8); containerd drops a "\r"
 *             before the container's newline. Kept as written here (as kubelet does).
 *
 * containerd cuts a line longer than max_container_log_line_size (default 16384) into P pieces of exactly that
 * many bytes, possibly inside a multi-byte character (so a piece alone may not be valid UTF-8: the merge joins the
 * bytes before decoding); output that ends without a newline when the stream closes is written with tag P. Each
 * piece carries its own time.
 *
 * A physical line is decoded on its own (`decodeLine`); the `PartialMerger` joins pieces per stream, bounds a
 * logical line to `maxBytes` and tracks the only offsets safe to resume from (never inside a merge).
 *
 * Limits: a merged record keeps at most maxBytes of text, and a merge in progress never holds more; a corrupt line
 * keeps its first 65536 characters. Bounding a physical line is the reader's job: dockerd's are at most
 * 16384 × 6 bytes (every byte escaped as \u00XX) plus the envelope and attrs; containerd's at most
 * max_container_log_line_size plus ~45 bytes, unless that is set to -1 (unlimited). Other writers may write
 * lines of any length: the reader keeps only the head and tail of an over-long line (`decodeLongLine`).
 */
import { isUtf8 } from "node:buffer";
import { NagareError } from "../../core/errors.ts";

export type LogFormat = "json-file" | "cri";

/** One physical line. */
export interface DecodedLine {
  /** "stdout" | "stderr"; "" when the line is too corrupt to tell. */
  stream: string;
  /** The line's own timestamp string as written; "" when the line is too corrupt to tell. */
  time: string;
  /** The log text without a trailing "\n" (json-file) / the message (CRI); lossy UTF-8 when `bytes` is set. */
  text: string;
  /** json-file: `log` lacked the trailing "\n"; CRI: tag P. */
  partial: boolean;
  attrs?: Record<string, string>;
  /**
   * Set when the line is corrupt (bad JSON, wrong shape, truncated write, bad CRI prefix, invalid UTF-8 in a
   * json-file line): then partial is false. `text` is the raw line (lossy UTF-8), except for a json-file line that
   * is well-formed apart from invalid UTF-8: then stream, time, attrs and text come from it (lossy).
   */
  error?: string;
  /** The physical line was too long to hold: `text` is its head only (decodeLongLine). */
  truncated?: boolean;
  /**
   * CRI only: the message's raw bytes when they are not valid UTF-8 (a copy). Not an error: containerd writes what
   * the container wrote, and cuts pieces inside multi-byte characters; the merger joins bytes before decoding.
   */
  bytes?: Uint8Array;
}

export interface MergedRecord {
  stream: string;
  /** The first piece's time. */
  time: string;
  /** The concatenated text, at most maxBytes bytes of UTF-8 (cut on a character boundary). */
  text: string;
  /** The text was cut at maxBytes; the rest of the logical line was read and dropped. */
  truncated: boolean;
  /** The line was corrupt (see DecodedLine.error), or (CRI) the merged message is not valid UTF-8. */
  error?: string;
  attrs?: Record<string, string>;
  /** Offset just after the last piece (the terminating one). */
  endOffset: number;
  /** Offset of the first piece's first byte; undefined when the record began in a previous file (restore). */
  startOffset?: number;
}

const NL = 10;
const CR = 13;
const SP = 32;
const LBRACE = 123;
const QUOTE = 34;
const BACKSLASH = 92;
const MAX_ERROR_TEXT = 64 * 1024;

// ---- format detection ------------------------------------------------------------------------------------

/** "json-file" when the first non-blank byte is "{", "cri" when the line has a CRI prefix, else undefined. */
export function detectFormat(firstLine: Uint8Array | string): LogFormat | undefined {
  const b = typeof firstLine === "string" ? Buffer.from(firstLine) : asBuffer(firstLine);
  let i = 0;
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) i = 3; // a UTF-8 byte order mark
  while (i < b.length && (b[i] === SP || b[i] === 9 || b[i] === CR || b[i] === NL)) i++;
  if (i === b.length) return undefined;
  if (b[i] === LBRACE) return "json-file";
  return criPrefix(i === 0 ? b : b.subarray(i)) === undefined ? "cri" : undefined;
}

// ---- one physical line -----------------------------------------------------------------------------------

/** Decodes one physical line (without its "\n"). Never throws. */
export function decodeLine(line: Uint8Array, format: LogFormat): DecodedLine {
  const b = asBuffer(line);
  return format === "cri" ? decodeCri(b) : decodeJsonFile(b);
}

function decodeJsonFile(b: Buffer): DecodedLine {
  const valid = isUtf8(b);
  const s = b.toString("utf8");
  let o: unknown;
  try {
    o = JSON.parse(s);
  } catch {
    return corrupt(s, b.length === 0 ? "empty line" : b[0] === LBRACE ? truncatedOrBad(b) : "not a JSON object");
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) return corrupt(s, "not a JSON object");
  const e = o as { log?: unknown; stream?: unknown; time?: unknown; attrs?: unknown };
  const log = e.log;
  const stream = e.stream;
  const time = e.time;
  if (typeof log !== "string") return corrupt(s, `json-file entry without a string "log"`);
  if (typeof stream !== "string") return corrupt(s, `json-file entry without a string "stream"`);
  if (typeof time !== "string") return corrupt(s, `json-file entry without a string "time"`);
  const full = log.length > 0 && log.charCodeAt(log.length - 1) === NL;
  const out: DecodedLine = { stream, time, text: full ? log.slice(0, -1) : log, partial: !full };
  if (e.attrs !== undefined) {
    const attrs = toAttrs(e.attrs);
    if (attrs === undefined) return corrupt(s, `json-file entry whose "attrs" is not an object`);
    out.attrs = attrs;
  }
  if (!valid) {
    // dockerd never writes invalid UTF-8 (it escapes it as \ufffd): the file was damaged. Ship what was readable,
    // but as a record of its own.
    out.partial = false;
    out.error = "invalid UTF-8";
  }
  return out;
}

/** A line starting with "{" that JSON.parse refused: cut off (an interrupted write) or otherwise malformed. */
function truncatedOrBad(b: Buffer): string {
  let i = b.length - 1;
  while (i > 0 && (b[i] === SP || b[i] === CR || b[i] === 9)) i--;
  return b[i] === 125 /* } */ ? "invalid JSON" : "invalid JSON (truncated entry)";
}

function toAttrs(v: unknown): Record<string, string> | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const src = v as Record<string, unknown>;
  for (const k in src) {
    if (typeof src[k] !== "string") {
      // dockerd writes strings only; keep other values readable rather than dropping the line
      const out: Record<string, string> = {};
      for (const key in src) {
        const x = src[key];
        out[key] = typeof x === "string" ? x : JSON.stringify(x) ?? "";
      }
      return out;
    }
  }
  return src as Record<string, string>;
}

function decodeCri(b: Buffer): DecodedLine {
  const bad = criPrefix(b);
  if (bad !== undefined) return corrupt(b.toString("utf8"), `bad CRI prefix: ${bad}`);
  // criPrefix validated: time SP stream SP tags [SP message]
  const t = b.indexOf(SP);
  const s = t + 7; // "stdout" and "stderr" are 6 bytes
  let m = b.indexOf(SP, s + 1);
  if (m < 0) m = b.length;
  const end = b.length;
  const out: DecodedLine = {
    stream: b[t + 4] === 111 /* o */ ? "stdout" : "stderr",
    time: b.toString("latin1", 0, t),
    text: m + 1 < end ? b.toString("utf8", m + 1, end) : "",
    partial: b[s + 1] === 80 /* P */ && (s + 2 === m || b[s + 2] === 58) /* ":" */,
  };
  if (m + 1 < end && !isUtf8(b)) out.bytes = new Uint8Array(b.subarray(m + 1, end));
  return out;
}

/** undefined when `b` starts with a valid CRI prefix (time SP stream SP tags, then SP or the end), else why not. */
function criPrefix(b: Buffer): string | undefined {
  const t = b.indexOf(SP);
  if (t < 0) return "no fields";
  if (!isRfc3339(b, t)) return "the time is not RFC 3339";
  const s = t + 1;
  if (b.length < s + 7 || b[s + 6] !== SP || !(isStream(b, s, "stdout") || isStream(b, s, "stderr"))) {
    return "the stream is not stdout or stderr";
  }
  const tag = b[s + 7];
  if (tag !== 80 && tag !== 70) return "the tag is not P or F"; // P, F
  const after = b[s + 8];
  if (after !== undefined && after !== SP && after !== 58) return "the tag is not P or F";
  return undefined;
}

function isStream(b: Buffer, at: number, name: string): boolean {
  for (let k = 0; k < 6; k++) if (b[at + k] !== name.charCodeAt(k)) return false;
  return true;
}

/** YYYY-MM-DDTHH:MM:SS[.1-9 digits](Z|±HH:MM) in b[0, end). */
function isRfc3339(b: Buffer, end: number): boolean {
  if (end < 20 || end > 35) return false;
  for (let k = 0; k < 19; k++) {
    const c = b[k]!;
    const want = k === 4 || k === 7 ? 45 : k === 10 ? 84 : k === 13 || k === 16 ? 58 : 0; // - - T : :
    if (want === 0 ? c < 48 || c > 57 : c !== want && !(k === 10 && c === 116)) return false;
  }
  let i = 19;
  if (b[i] === 46) {
    const from = ++i;
    while (i < end && b[i]! >= 48 && b[i]! <= 57) i++;
    if (i === from || i - from > 9) return false;
  }
  if (i === end - 1) return b[i] === 90 || b[i] === 122; // Z z
  if (i !== end - 6 || (b[i] !== 43 && b[i] !== 45) || b[i + 3] !== 58) return false;
  return isDigit(b[i + 1]) && isDigit(b[i + 2]) && isDigit(b[i + 4]) && isDigit(b[i + 5]);
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 48 && c <= 57;
}

// ---- a physical line too long to hold ----------------------------------------------------------------------

const LOG_KEY = Buffer.from('{"log":"');
/** The end of a json-file entry: the `log` value's closing quote, stream, attrs and time (moby's key order). */
const ENVELOPE_END = /","stream":"(stdout|stderr)"(?:,"attrs":(\{.*\}))?,"time":"([^"\\]*)"\}\s*$/s;

/**
 * A physical line too long to hold, told from its first bytes (`head`) and its last ones up to the newline
 * (`tail`); the result is marked truncated and its text is the head's (the merger cuts it to maxBytes).
 * CRI: the prefix is at the head. json-file: `log` comes first in an entry and is decoded from the head as far as
 * it goes (up to a whole escape and a whole character); stream, attrs and time come last and are read from the
 * tail. A line that is neither is corrupt, its head shipped raw.
 */
export function decodeLongLine(head: Uint8Array, tail: Uint8Array, format: LogFormat): DecodedLine {
  const h = asBuffer(head);
  const line = format === "cri" ? decodeCri(h.subarray(0, completeUtf8(h))) : decodeLongJsonFile(h, asBuffer(tail));
  line.truncated = true;
  return line;
}

function decodeLongJsonFile(h: Buffer, tail: Buffer): DecodedLine {
  const end = tail.toString("utf8");
  const envelope = ENVELOPE_END.exec(end);
  if (envelope === null || !h.subarray(0, LOG_KEY.length).equals(LOG_KEY)) return corrupt(h.toString("utf8"), "an over-long line that is not a json-file entry");
  const valueEnd = escapedPrefixEnd(h, LOG_KEY.length);
  let text: string;
  try {
    text = JSON.parse(`"${h.toString("utf8", LOG_KEY.length, valueEnd)}"`) as string;
  } catch {
    return corrupt(h.toString("utf8"), "an over-long json-file entry whose log is not a JSON string");
  }
  const last = text.charCodeAt(text.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) text = text.slice(0, -1); // half a surrogate pair: its other half was cut off
  // The value ends just before the envelope; it ends with an escaped newline (an odd run of backslashes, then n)
  // unless the entry is a partial piece. A tail that starts at the envelope cannot tell: a full line then.
  const before = end.slice(0, envelope.index);
  let backslashes = 0;
  while (before.length - 2 - backslashes >= 0 && before.charCodeAt(before.length - 2 - backslashes) === BACKSLASH) backslashes++;
  const partial = before.length > 0 && !(before.endsWith("n") && backslashes % 2 === 1);
  const out: DecodedLine = { stream: envelope[1]!, time: envelope[3]!, text, partial };
  if (envelope[2] !== undefined) {
    try {
      const attrs = toAttrs(JSON.parse(envelope[2]));
      if (attrs !== undefined) out.attrs = attrs;
    } catch {
      // attrs that do not parse are left out; the line itself is still told apart
    }
  }
  return out;
}

/**
 * Where the escaped content of a JSON string starting at `from` can be cut: after the last whole escape and whole
 * UTF-8 character in `b`, and not past the string's closing quote.
 */
function escapedPrefixEnd(b: Buffer, from: number): number {
  let i = from;
  while (i < b.length) {
    const c = b[i];
    if (c === QUOTE) break;
    if (c === BACKSLASH) {
      const n = b[i + 1] === 117 /* u */ ? 6 : 2;
      if (i + n > b.length) break;
      i += n;
    } else i++;
  }
  return from + completeUtf8(b.subarray(from, i));
}

/** The length of `b` without an incomplete multi-byte sequence at its end. */
function completeUtf8(b: Uint8Array): number {
  let k = b.length;
  while (k > 0 && b.length - k < 3 && (b[k - 1]! & 0xc0) === 0x80) k--;
  if (k === 0) return b.length;
  const lead = b[k - 1]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return need > b.length - (k - 1) ? k - 1 : b.length;
}

function corrupt(raw: string, error: string): DecodedLine {
  // A corrupt "line" may be a run of garbage without newlines: keep the error record itself bounded.
  const text = raw.length > MAX_ERROR_TEXT ? raw.slice(0, MAX_ERROR_TEXT) : raw;
  return { stream: "", time: "", text, partial: false, error };
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

// ---- merging partial lines -------------------------------------------------------------------------------

/** A logical line being merged on one stream. */
interface Pending {
  stream: string;
  time: string;
  attrs: Record<string, string> | undefined;
  /** Retained pieces: text, or raw bytes (CRI pieces that are not valid UTF-8 on their own). */
  parts: (string | Uint8Array)[];
  /** UTF-8 bytes retained. */
  bytes: number;
  binary: boolean;
  truncated: boolean;
  startOffset: number | undefined;
}

interface Snapshot {
  nagarePartialMerge: 1;
  pending: {
    stream: string;
    time: string;
    attrs?: Record<string, string>;
    parts: (string | Uint8Array)[];
    bytes: number;
    binary: boolean;
    truncated: boolean;
  }[];
}

/**
 * Merges partial lines into logical records, per stream; hard limit maxBytes per merged record.
 *
 * Every physical line of a file must be pushed, in file order, with the offset just after it (its newline).
 * Records come out when their logical line ends, so a record on one stream may come out before a record on the
 * other stream that began earlier; `safeOffset` (read after each push) is the position to checkpoint once every
 * record emitted so far is done.
 */
export class PartialMerger {
  private readonly max: number;
  /** stream -> merge in progress; `count` of them (the hot path only looks at the count). */
  private readonly pending = new Map<string, Pending>();
  private count = 0;
  private held = 0;
  private lastEnd: number;
  private safe: number;

  /** `startOffset`: the file offset reading starts at (the first pushed line begins there). */
  constructor(maxBytes: number, startOffset = 0) {
    this.max = Math.max(0, Math.floor(maxBytes));
    this.lastEnd = startOffset;
    this.safe = startOffset;
  }

  /** Byte offset up to which everything is complete (no merge in progress for any stream): the only safe checkpoint. */
  get safeOffset(): number {
    return this.safe;
  }

  /** Text bytes held by merges in progress. */
  get pendingBytes(): number {
    return this.held;
  }

  /** Streams with a merge in progress. */
  get pendingStreams(): number {
    return this.count;
  }

  /** Feeds one physical line with the offset just after it; returns the record it completes, if any. */
  push(line: DecodedLine, endOffset: number): MergedRecord | undefined {
    const start = this.lastEnd;
    this.lastEnd = endOffset;
    if (this.count === 0) {
      if (!line.partial || line.error !== undefined) {
        this.safe = endOffset;
        return this.single(line, start, endOffset);
      }
    } else if (line.error !== undefined) {
      return this.single(line, start, endOffset); // a record of its own; merges in progress go on
    }
    let p = this.count === 0 ? undefined : this.pending.get(line.stream);
    if (p === undefined) {
      if (!line.partial) return this.single(line, start, endOffset);
      p = {
        stream: line.stream,
        time: line.time,
        attrs: line.attrs,
        parts: [],
        bytes: 0,
        binary: false,
        truncated: false,
        startOffset: start,
      };
      this.pending.set(line.stream, p);
      this.count++;
    }
    this.append(p, line);
    if (line.partial) return undefined;
    this.pending.delete(p.stream);
    this.count--;
    this.held -= p.bytes;
    if (this.count === 0) this.safe = endOffset;
    return finish(p, endOffset);
  }

  /**
   * Ends every merge in progress as a record (as far as it got): for a line whose end will never come, e.g. the
   * container's last output without a newline, or a file that was removed. Afterwards safeOffset is the end of the
   * last line pushed.
   */
  flush(): MergedRecord[] {
    const out: MergedRecord[] = [];
    for (const p of this.pending.values()) out.push(finish(p, this.lastEnd));
    this.pending.clear();
    this.count = 0;
    this.held = 0;
    this.safe = this.lastEnd;
    return out;
  }

  /**
   * The merges in progress, to carry to the merger of the next file after a rotation (a copy; structured-clonable,
   * and JSON-serialisable when it holds no CRI byte pieces).
   */
  snapshot(): unknown {
    const s: Snapshot = { nagarePartialMerge: 1, pending: [] };
    for (const p of this.pending.values()) {
      s.pending.push({
        stream: p.stream,
        time: p.time,
        ...(p.attrs === undefined ? {} : { attrs: p.attrs }),
        parts: p.parts.slice(),
        bytes: p.bytes,
        binary: p.binary,
        truncated: p.truncated,
      });
    }
    return s;
  }

  /**
   * Replaces the merges in progress by those of a snapshot (normally on a fresh merger for the next file). Their
   * records have no startOffset; safeOffset stays where this merger is until they complete. Throws on a value that
   * is not a snapshot.
   */
  restore(state: unknown): void {
    // Snapshots are made by a merger of this process, never read from disk: anything else is a bug.
    if (!isSnapshot(state)) throw new NagareError("INTERNAL", "the merges handed to the next file are not a snapshot of a merger");
    this.pending.clear();
    this.count = 0;
    this.held = 0;
    for (const q of state.pending) {
      const p: Pending = {
        stream: q.stream,
        time: q.time,
        attrs: q.attrs,
        parts: q.parts.slice(),
        bytes: q.bytes,
        binary: q.binary,
        truncated: q.truncated,
        startOffset: undefined,
      };
      this.pending.set(p.stream, p);
      this.count++;
      this.held += p.bytes;
    }
  }

  /** A physical line that is a record by itself. */
  private single(line: DecodedLine, start: number, endOffset: number): MergedRecord {
    let text = line.text;
    let truncated = line.truncated === true;
    // A UTF-16 unit is at most 3 UTF-8 bytes: only a long text needs counting.
    if (text.length * 3 > this.max && Buffer.byteLength(text, "utf8") > this.max) {
      text = cutString(text, this.max);
      truncated = true;
    }
    const r: MergedRecord = { stream: line.stream, time: line.time, text, truncated, endOffset, startOffset: start };
    if (line.attrs !== undefined) r.attrs = line.attrs;
    if (line.error !== undefined) r.error = line.error;
    else if (line.bytes !== undefined) r.error = "invalid UTF-8";
    return r;
  }

  private append(p: Pending, line: DecodedLine): void {
    if (p.truncated) return; // the rest of a cut line is read and dropped
    const raw = line.bytes;
    const size = raw !== undefined ? raw.length : Buffer.byteLength(line.text, "utf8");
    const room = this.max - p.bytes;
    if (size <= room) {
      if (line.truncated === true) p.truncated = true;
      if (size === 0) return;
      p.parts.push(raw ?? line.text);
      if (raw !== undefined) p.binary = true;
      p.bytes += size;
      this.held += size;
      return;
    }
    p.truncated = true;
    if (room <= 0) return;
    if (raw !== undefined) {
      p.parts.push(raw.subarray(0, utf8Boundary(raw, room)));
      p.binary = true;
    } else {
      p.parts.push(cutString(line.text, room));
    }
    const added = partBytes(p.parts[p.parts.length - 1]!);
    p.bytes += added;
    this.held += added;
  }
}

function finish(p: Pending, endOffset: number): MergedRecord {
  let text: string;
  let error: string | undefined;
  if (!p.binary) text = p.parts.length === 1 ? (p.parts[0] as string) : p.parts.join("");
  else {
    const all = Buffer.concat(p.parts.map((x) => (typeof x === "string" ? Buffer.from(x, "utf8") : x)));
    text = all.toString("utf8");
    if (!isUtf8(all)) error = "invalid UTF-8";
  }
  const r: MergedRecord = { stream: p.stream, time: p.time, text, truncated: p.truncated, endOffset };
  if (p.startOffset !== undefined) r.startOffset = p.startOffset;
  if (p.attrs !== undefined) r.attrs = p.attrs;
  if (error !== undefined) r.error = error;
  return r;
}

function partBytes(x: string | Uint8Array): number {
  return typeof x === "string" ? Buffer.byteLength(x, "utf8") : x.length;
}

/** The longest prefix of `s` that is at most `max` bytes of UTF-8 and ends on a character boundary. */
function cutString(s: string, max: number): string {
  if (max <= 0) return "";
  const b = Buffer.from(s, "utf8");
  if (b.length <= max) return s;
  return b.toString("utf8", 0, utf8Boundary(b, max));
}

/** `max` moved back so that b[0, result) does not end inside a multi-byte sequence (b.length > max). */
function utf8Boundary(b: Uint8Array, max: number): number {
  let k = Math.min(max, b.length);
  if (k === b.length) return k;
  const stop = Math.max(0, k - 3);
  while (k > stop && (b[k]! & 0xc0) === 0x80) k--;
  return (b[k]! & 0xc0) === 0x80 ? max : k; // not UTF-8 here anyway: cut at max
}

function isSnapshot(v: unknown): v is Snapshot {
  if (typeof v !== "object" || v === null) return false;
  const s = v as Partial<Snapshot>;
  if (s.nagarePartialMerge !== 1 || !Array.isArray(s.pending)) return false;
  return s.pending.every(
    (p) =>
      typeof p === "object" &&
      p !== null &&
      typeof p.stream === "string" &&
      typeof p.time === "string" &&
      Array.isArray(p.parts) &&
      p.parts.every((x) => typeof x === "string" || x instanceof Uint8Array) &&
      typeof p.bytes === "number" &&
      typeof p.binary === "boolean" &&
      typeof p.truncated === "boolean",
  );
}
