/**
 * Incremental parser for systemd's Journal Export Format (`journalctl -o export`, systemd-journal-gatewayd).
 *
 * Wire grammar (https://systemd.io/JOURNAL_EXPORT_FORMATS/):
 *
 *   stream       = *( *blank entry ) *blank
 *   entry        = 1*field blank                  ; the last entry may end at EOF without its blank line
 *   blank        = %x0A
 *   field        = text-field / binary-field
 *   text-field   = name "=" *( %x00-09 / %x0B-FF ) %x0A   ; the value is everything up to the newline
 *   binary-field = name %x0A length *OCTET %x0A           ; exactly `length` raw bytes, then a newline
 *   length       = 8OCTET                                 ; unsigned 64-bit little endian, < 2^48 here
 *   name         = 1*64( %x41-5A / %x30-39 / "_" )        ; not starting with a digit
 *
 * journalctl writes `__CURSOR`, `__REALTIME_TIMESTAMP` (µs since the epoch), `__MONOTONIC_TIMESTAMP` and
 * `_BOOT_ID` first (newer versions add `__SEQNUM`, `__SEQNUM_ID`). A name may repeat within an entry. Values
 * that are not plain text are binary-framed, and what counts as plain text changed between systemd versions
 * (printable ASCII only; later any non-control UTF-8 and TAB), so a binary-framed value that is valid UTF-8 is
 * returned as a string like a text value.
 *
 * The reader is a cursor over one chunk. A chunk boundary interrupts at most: a name or binary header (under
 * 80 bytes, carried over and completed with the head of the next chunk), a text or binary value (its retained
 * bytes are copied out piece by piece and joined once, the rest only counted), or the skip to the next blank
 * line after a malformed entry. Nothing of the current entry is ever parsed twice.
 *
 * Speed comes from doing per entry what would otherwise be done per field: each entry's bytes become one latin1
 * string (one native call), the expected next name is checked against it with one `startsWith`, and an ASCII
 * value is a substring of it; only a value with bytes >= 0x80 is decoded as UTF-8 on its own.
 */
import { isAscii, isUtf8 } from "node:buffer";
import type { FieldValue, Fields } from "../../core/record.ts";

export interface ExportEntry {
  /**
   * name -> value: a string, a Uint8Array (not UTF-8), or an array of them when the name repeats (in order of
   * appearance). Names are added in the order the parser first saw them, not as this entry lists them.
   */
  fields: Fields;
  /** Names whose value (or any element of a repeated value) is a Uint8Array, else undefined. */
  binaryFields: string[] | undefined;
  cursor: string | undefined;
  realtimeUs: string | undefined;
  /** Stream bytes of this entry, from the end of the previous entry (extra blank lines included) to its blank line. */
  bytes: number;
  /** Stream offset just after this entry, counted from the parser's construction or last reset(). */
  end: number;
  /** Some value was cut or dropped by a limit. */
  truncated: boolean;
}

export interface MalformedEntry {
  reason: string;
  /** The entry's __CURSOR if it was read before the problem. */
  cursor: string | undefined;
  bytes: number;
  end: number;
}

export interface ExportParserLimits {
  /** A longer value keeps its first maxFieldBytes bytes (cut back to a UTF-8 boundary when it is text). */
  maxFieldBytes: number;
  /**
   * An entry retains at most this many bytes, counted as name + value + 2 per field: the value that reaches the
   * budget is cut to fit, later ones are dropped (the first __CURSOR and __REALTIME_TIMESTAMP are always kept).
   */
  maxEntryBytes: number;
}

const NL = 10;
const EQ = 61;
const MAX_NAME = 64;
/** 2^48 is far above any journal's data size limit; a larger "length" means the header line was no header. */
const MAX_BINARY_HI = 0x10000;
/** Bytes of a new chunk joined to a carried-over name or header: enough to complete any of them. */
const HEAD_BYTES = 128;

const NL_NL = Buffer.from("\n\n");
/**
 * Buffer#latin1Slice: the string toString("latin1", s, e) makes, without the generic encoding dispatch, which
 * in Bun costs three times the conversion itself for entry-sized slices. Node and Bun have it; the typings do not.
 */
type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string };
const HIGH = /[\x80-\xff]/g;
/** 1 for the bytes allowed in a field name: A-Z, 0-9, _ */
const NAME_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) NAME_CHAR[c] = (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 ? 1 : 0;

/** Interned field names (by hash slot), so a known name costs no allocation. */
const NAME_SLOTS = 512;
const START = NAME_SLOTS; // the prediction slot for the first field of an entry

const enum S {
  Line, // at the start of a line
  Text, // inside a text value
  Bin, // inside a binary value
  BinEnd, // expecting the newline after a binary value
  Skip, // skipping to the next blank line after a malformed entry
}

export class ExportParser {
  private readonly maxField: number;
  private readonly maxEntry: number;
  private state = S.Line;
  /** Stream offset of byte 0 of the buffer being parsed; between pushes, of the first byte not yet consumed. */
  private base = 0;
  private entryStart = 0;
  /** The start of a name or binary header cut by the end of the last chunk (a copy). */
  private carry: Buffer | undefined = undefined;
  // The entry being read: its fields as they appear (made into an object by build) and what is known about it.
  private fNames: string[] = [];
  private fValues: (string | Uint8Array)[] = [];
  private fRanks: number[] = [];
  private sorted = true; // fRanks ascending so far
  private seen = 0; // fields read, dropped ones included: an entry whose fields were all dropped is still an entry
  private binary: string[] | undefined = undefined;
  private cursor: string | undefined = undefined;
  private realtime: string | undefined = undefined;
  private retained = 0;
  private truncated = false;
  // The value being read across chunks.
  private name = "";
  private keep = 0; // value bytes to retain; negative drops the field
  private valueLen = 0; // value bytes seen so far (text) or declared (binary)
  private parts: Uint8Array[] = [];
  private partLen = 0;
  private binBuf: Uint8Array | undefined = undefined;
  private binLeft = 0;
  private reason = "";
  private skipNl = false; // the byte before the skip position was a newline
  // A window [winStart, winEnd) of the buffer as a latin1 string, from a line start to the next blank line, so
  // normally one entry: one native call per entry instead of one per value. Names are compared against it and
  // ASCII values are substrings of it. It is one entry, not the chunk, because a substring keeps its whole base
  // string alive: a record held for a slow sink must pin only its own bytes, or memory is no longer bounded.
  private win = "";
  private winStart = 0;
  private winEnd = -1;
  private high = 0; // the first byte >= 0x80 at or after where it was last looked for, in the window
  // Per buffer, looked at on first need: 1 all ASCII, 0 not, -1 not known yet; else [utf8From, utf8To) is known
  // to be valid UTF-8 and starts at a newline.
  private ascii = -1;
  private utf8From = 0;
  private utf8To = 0;
  // Interned names by slot; for each slot (and START) the slot of the name that followed it last time (the
  // prediction) and when its name was first seen (the canonical field order, see build).
  private readonly names: (string | undefined)[] = new Array<string | undefined>(NAME_SLOTS).fill(undefined);
  private readonly next = new Int16Array(NAME_SLOTS + 1).fill(-1);
  private prevSlot = START;
  private readonly rank = new Int32Array(NAME_SLOTS + 1);
  private nextRank = 0;
  private at = 0; // scanName's second result: where the name ended, or where to go on
  private slot = 0; // scanName's third result: the name's slot

  constructor(limits: ExportParserLimits) {
    this.maxField = Math.max(0, Math.floor(limits.maxFieldBytes));
    this.maxEntry = Math.max(0, Math.floor(limits.maxEntryBytes));
  }

  get pendingBytes(): number {
    const value = this.binBuf === undefined ? this.partLen : this.binBuf.length;
    return this.retained + value + (this.carry?.length ?? 0);
  }

  push(chunk: Uint8Array, out: ExportEntry[], bad: MalformedEntry[]): void {
    let b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // A carried name or header is completed by parsing it joined with the head of this chunk (again, with 1-byte
    // chunks); the rest of the chunk is parsed in place.
    while (this.carry !== undefined && b.length > 0) {
      const k = Math.min(b.length, HEAD_BYTES);
      const head = Buffer.concat([this.carry, b.subarray(0, k)]);
      this.carry = undefined;
      this.feed(head, out, bad);
      b = b.subarray(k);
    }
    if (b.length > 0) this.feed(b, out, bad);
  }

  end(out: ExportEntry[], bad: MalformedEntry[]): void {
    const eof = this.base + (this.carry?.length ?? 0);
    if (this.state === S.Skip) this.reportBad(eof, bad);
    else if (this.state !== S.Line || this.carry !== undefined) {
      this.reason = "stream ended inside an entry";
      this.reportBad(eof, bad);
    } else if (this.seen > 0) this.emit(eof, out);
    this.reset();
  }

  reset(): void {
    this.state = S.Line;
    this.base = 0;
    this.entryStart = 0;
    this.carry = undefined;
    this.skipNl = false;
    this.clearEntry();
  }

  private feed(b: Buffer, out: ExportEntry[], bad: MalformedEntry[]): void {
    const end = b.length;
    this.ascii = -1;
    this.winEnd = -1;
    let pos = 0;
    while (pos < end) {
      switch (this.state) {
        case S.Line:
          pos = this.lines(b, pos, out);
          break;
        case S.Text:
          pos = this.textMore(b, pos);
          break;
        case S.Bin:
          pos = this.binMore(b, pos);
          break;
        case S.BinEnd:
          pos = this.binEnd(b, pos);
          break;
        case S.Skip:
          pos = this.skip(b, pos, bad);
          break;
      }
    }
    this.base += end - (this.carry?.length ?? 0);
    this.win = "";
  }

  /**
   * One native pass decides how text values are decoded: an all-ASCII buffer (the common case) needs no check;
   * else the stretch between its first and last newline is checked as UTF-8 once, so values inside it need none.
   */
  private checkUtf8(b: Buffer): void {
    this.ascii = isAscii(b) ? 1 : 0;
    if (this.ascii === 1) return;
    const from = b.indexOf(NL);
    const to = from < 0 ? -1 : b.lastIndexOf(NL);
    const ok = to > from && isUtf8(b.subarray(from, to));
    this.utf8From = ok ? from : 0;
    this.utf8To = ok ? to : 0;
  }

  /**
   * The latin1 window holding `pos`, made anew from `pos` to the next blank line when `pos` is outside it. A line
   * starting inside a window ends inside it: the window's end is the first newline pair after its start.
   */
  private window(b: Buffer, pos: number): string {
    if (pos >= this.winStart && pos < this.winEnd) return this.win;
    const nn = b.indexOf(NL_NL, pos);
    const end = nn < 0 ? b.length : nn + 1;
    if (this.ascii < 0) this.checkUtf8(b);
    this.win = (b as Latin1Buffer).latin1Slice(pos, end);
    this.winStart = pos;
    this.winEnd = end;
    this.high = this.ascii === 1 || isAscii(b.subarray(pos, end)) ? end : -1;
    return this.win;
  }

  /** Reads fields while they are at hand; returns where the next state starts. */
  private lines(b: Buffer, pos: number, out: ExportEntry[]): number {
    const end = b.length;
    while (pos < end && this.state === S.Line) {
      let name = this.predict(b, pos);
      let i = pos;
      if (name !== undefined) i += name.length;
      else {
        name = this.scanName(b, pos, out);
        i = this.at;
        if (name === undefined) {
          pos = i;
          continue;
        }
        this.next[this.prevSlot] = this.slot;
        this.prevSlot = this.slot;
      }
      pos = b[i] === EQ ? this.text(b, name, i + 1) : this.binaryHeader(b, name, pos, i + 1);
    }
    return pos;
  }

  /**
   * Entries from one producer repeat their field order, so the name that followed the previous field last time
   * is tried first: one native comparison instead of a loop over bytes. Predicted names were validated before.
   */
  private predict(b: Buffer, pos: number): string | undefined {
    const slot = this.next[this.prevSlot]!;
    const guess = slot < 0 ? undefined : this.names[slot];
    if (guess === undefined || !this.window(b, pos).startsWith(guess, pos - this.winStart)) return undefined;
    const c = b[pos + guess.length];
    if (c !== EQ && c !== NL) return undefined;
    this.prevSlot = slot;
    return guess;
  }

  /**
   * Reads and validates a name up to its `=` or newline: returns it with `this.at` on that byte. Otherwise
   * returns undefined with `this.at` where to go on: after a blank line (the entry ended), at the end of the
   * buffer (the name is carried over), or where the skip over a malformed entry starts.
   */
  private scanName(b: Buffer, pos: number, out: ExportEntry[]): string | undefined {
    const end = b.length;
    const lim = Math.min(end, pos + MAX_NAME + 1);
    let i = pos;
    let h = 0;
    for (; i < lim; i++) {
      const c = b[i]!;
      if (NAME_CHAR[c] === 0) break;
      h = (h * 31 + c) | 0;
    }
    if (i - pos > MAX_NAME) return this.fail(i, `field name longer than ${MAX_NAME} bytes`);
    if (i === end) {
      this.at = this.hold(b, pos);
      return undefined;
    }
    const c = b[i]!;
    if (i === pos) {
      if (c !== NL) return this.fail(i, c === EQ ? "empty field name" : notAField(c));
      if (this.seen > 0) this.emit(this.base + i + 1, out); // extra blank lines count towards the next entry
      this.at = i + 1;
      return undefined;
    }
    if (c !== EQ && c !== NL) return this.fail(i, notAField(c));
    if (b[pos]! <= 57) return this.fail(i, "field name starts with a digit"); // the only name bytes <= '9'
    this.at = i;
    return this.intern(b, pos, i, h);
  }

  private fail(pos: number, reason: string): undefined {
    this.at = this.malformed(pos, reason, false);
    return undefined;
  }

  /** Carries the line begun at `pos` over to the next chunk. */
  private hold(b: Buffer, pos: number): number {
    this.carry = Buffer.from(b.subarray(pos));
    return b.length;
  }

  /** Returns the cached string for a name seen before; a collision replaces the slot. */
  private intern(b: Buffer, s: number, e: number, h: number): string {
    const slot = (h ^ (h >>> 9)) & (NAME_SLOTS - 1);
    this.slot = slot;
    const cached = this.names[slot];
    if (cached !== undefined && cached.length === e - s) {
      let k = 0;
      while (k < cached.length && cached.charCodeAt(k) === b[s + k]) k++;
      if (k === cached.length) return cached;
    }
    const name = b.toString("latin1", s, e);
    this.names[slot] = name;
    this.rank[slot] = this.nextRank++;
    return name;
  }

  /** A text value from `s`: whole when its newline is in this buffer, else its pieces are collected. */
  private text(b: Buffer, name: string, s: number): number {
    const nl = b.indexOf(NL, s);
    const keep = this.budget(name);
    if (nl >= 0) {
      const n = nl - s;
      this.seen++;
      if (keep < 0) this.truncated = true;
      else if (n > keep) this.add(name, cut(b.subarray(s, s + keep)), keep, true);
      else this.add(name, this.textValue(b, s, nl), n, false);
      return nl + 1;
    }
    this.name = name;
    this.keep = keep;
    this.valueLen = 0;
    this.state = S.Text;
    return this.collect(b, s, b.length);
  }

  /** The text value [s, e) of a line that is wholly in this buffer. */
  private textValue(b: Buffer, s: number, e: number): string | Uint8Array {
    if (s < this.winStart || s >= this.winEnd) this.window(b, s); // a window holding s also holds e
    if (s > this.high) {
      HIGH.lastIndex = s - this.winStart;
      const m = HIGH.exec(this.win);
      this.high = m === null ? this.winEnd : m.index + this.winStart;
    }
    if (e <= this.high) return this.win.substring(s - this.winStart, e - this.winStart);
    if (s > this.utf8From && e <= this.utf8To) return b.toString("utf8", s, e);
    return decode(b.subarray(s, e));
  }

  private textMore(b: Buffer, pos: number): number {
    const nl = b.indexOf(NL, pos);
    if (nl < 0) return this.collect(b, pos, b.length);
    this.collect(b, pos, nl);
    if (this.keep < 0) this.truncated = true;
    else {
      const v = join(this.parts, this.partLen);
      const isCut = this.valueLen > this.keep;
      this.add(this.name, isCut ? cut(v) : decode(v), v.length, isCut);
    }
    this.endField();
    return nl + 1;
  }

  /** Copies the retained part of [s, e) (the caller may reuse the chunk); the rest is only counted. */
  private collect(b: Buffer, s: number, e: number): number {
    this.valueLen += e - s;
    const take = Math.min(e - s, this.keep - this.partLen);
    if (take > 0) {
      this.parts.push(new Uint8Array(b.subarray(s, s + take)));
      this.partLen += take;
    }
    return e;
  }

  /** After a binary header: `line` is where its line started, `s` is after its newline. */
  private binaryHeader(b: Buffer, name: string, line: number, s: number): number {
    if (b.length - s < 8) return this.hold(b, line);
    const lo = b.readUInt32LE(s);
    const hi = b.readUInt32LE(s + 4);
    // No journal holds such a value: the line was not a header, so resynchronise from the byte after it.
    if (hi >= MAX_BINARY_HI) return this.malformed(s, `binary field ${name} declares a length of 2^48 or more`, true);
    // Positions must stay int32: one double flowing back into the cursor deoptimises the whole hot path for good.
    const len = hi === 0 ? lo : hi * 0x100000000 + lo;
    const v = s + 8;
    this.name = name;
    this.keep = this.budget(name);
    this.valueLen = len;
    if (v + len < b.length) return this.binWhole(b, v, len | 0);
    this.binBuf = new Uint8Array(Math.max(0, Math.min(len, this.keep)));
    this.binLeft = len;
    this.partLen = 0;
    this.state = S.Bin;
    return v;
  }

  /** Fast path: the value and its newline are in this buffer. */
  private binWhole(b: Buffer, s: number, len: number): number {
    const e = s + len;
    if (b[e] !== NL) return this.malformed(e, `binary field ${this.name} is not followed by a newline`, false);
    if (this.keep < 0) this.truncated = true;
    else if (len > this.keep) this.add(this.name, cut(b.subarray(s, s + this.keep)), this.keep, true);
    else this.add(this.name, decode(b.subarray(s, e)), len, false);
    this.endField();
    return e + 1;
  }

  private binMore(b: Buffer, pos: number): number {
    const avail = Math.min(b.length - pos, this.binLeft);
    const buf = this.binBuf!;
    const take = Math.min(avail, buf.length - this.partLen);
    if (take > 0) {
      buf.set(b.subarray(pos, pos + take), this.partLen);
      this.partLen += take;
    }
    this.binLeft -= avail;
    if (this.binLeft === 0) this.state = S.BinEnd;
    return (pos + avail) | 0;
  }

  private binEnd(b: Buffer, pos: number): number {
    if (b[pos] !== NL) return this.malformed(pos, `binary field ${this.name} is not followed by a newline`, false);
    const buf = this.binBuf!;
    if (this.keep < 0) this.truncated = true;
    else {
      const isCut = this.valueLen > buf.length;
      this.add(this.name, isCut ? cut(buf) : decode(buf), buf.length, isCut);
    }
    this.endField();
    return pos + 1;
  }

  /**
   * Value bytes of the next field to retain: the field limit, or what is left of the entry budget (negative:
   * drop the field). The first __CURSOR and __REALTIME_TIMESTAMP are always kept: they identify the entry.
   */
  private budget(name: string): number {
    const room = this.maxEntry - this.retained - name.length - 2;
    if (room >= this.maxField) return this.maxField;
    if (
      (name === "__CURSOR" && this.cursor === undefined) ||
      (name === "__REALTIME_TIMESTAMP" && this.realtime === undefined)
    ) {
      return this.maxField;
    }
    return room;
  }

  private add(name: string, value: string | Uint8Array, size: number, isCut: boolean): void {
    this.retained += name.length + size + 2;
    if (isCut) this.truncated = true;
    const n = this.fNames.length;
    const rank = this.rank[this.prevSlot]!; // prevSlot: the slot of the name just read
    if (n > 0 && rank < this.fRanks[n - 1]!) this.sorted = false;
    this.fNames.push(name);
    this.fValues.push(value);
    this.fRanks.push(rank);
    if (typeof value !== "string") {
      if (this.binary === undefined) this.binary = [name];
      else if (!this.binary.includes(name)) this.binary.push(name);
    } else if (name.charCodeAt(1) === 95) {
      if (name === "__CURSOR") this.cursor ??= value;
      else if (name === "__REALTIME_TIMESTAMP") this.realtime ??= value;
    }
  }

  /**
   * The fields object. Its properties are added in one canonical order (by when each name was first seen), not
   * as they appear: journald orders an entry's fields by where their data sits in the journal file, which varies
   * from entry to entry, and every new order is a new object shape to the JS engine; thousands of shapes make
   * building (and later reading) the objects several times slower. Repeated values keep their own order.
   */
  private build(): Fields {
    const names = this.fNames;
    const values = this.fValues;
    const n = names.length;
    if (!this.sorted && n <= 64) sortByRank(names, values, this.fRanks); // larger entries: rare, left as they are
    const f: Fields = {};
    for (let k = 0; k < n; k++) {
      const name = names[k]!;
      const value = values[k]!;
      const prev: FieldValue | undefined = f[name];
      if (prev === undefined) f[name] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else f[name] = [prev, value];
    }
    return f;
  }

  private endField(): void {
    this.seen++;
    this.parts = [];
    this.partLen = 0;
    this.binBuf = undefined;
    this.state = S.Line;
  }

  private emit(endOffset: number, out: ExportEntry[]): void {
    out.push({
      fields: this.build(),
      binaryFields: this.binary,
      cursor: this.cursor,
      realtimeUs: this.realtime,
      bytes: endOffset - this.entryStart,
      end: endOffset,
      truncated: this.truncated,
    });
    this.entryStart = endOffset;
    this.clearEntry();
  }

  /**
   * Drops the entry's values (they will not be shipped) and skips from `pos` to the next blank line;
   * `afterNl`: the byte before `pos` ended a line, so a newline at `pos` already is the blank line.
   */
  private malformed(pos: number, reason: string, afterNl: boolean): number {
    const cursor = this.cursor;
    this.clearEntry();
    this.cursor = cursor;
    this.reason = reason;
    this.skipNl = afterNl;
    this.state = S.Skip;
    return pos;
  }

  private skip(b: Buffer, pos: number, bad: MalformedEntry[]): number {
    const end = b.length;
    if (this.skipNl && b[pos] === NL) return this.resync(pos + 1, bad);
    for (let i = pos; ; ) {
      const nl = b.indexOf(NL, i);
      if (nl < 0 || nl + 1 === end) {
        this.skipNl = nl >= 0;
        return end;
      }
      if (b[nl + 1] === NL) return this.resync(nl + 2, bad);
      i = nl + 1;
    }
  }

  private resync(next: number, bad: MalformedEntry[]): number {
    this.reportBad(this.base + next, bad);
    this.state = S.Line;
    return next;
  }

  private reportBad(endOffset: number, bad: MalformedEntry[]): void {
    bad.push({ reason: this.reason, cursor: this.cursor, bytes: endOffset - this.entryStart, end: endOffset });
    this.entryStart = endOffset;
    this.clearEntry();
  }

  private clearEntry(): void {
    if (this.fNames.length > 1024) {
      // let a pathological entry's arrays go instead of keeping their capacity
      this.fNames = [];
      this.fValues = [];
      this.fRanks = [];
    } else {
      this.fNames.length = 0;
      this.fValues.length = 0;
      this.fRanks.length = 0;
    }
    this.sorted = true;
    this.seen = 0;
    this.binary = undefined;
    this.cursor = undefined;
    this.realtime = undefined;
    this.retained = 0;
    this.truncated = false;
    this.prevSlot = START;
    this.parts = [];
    this.partLen = 0;
    this.binBuf = undefined;
  }
}

/** A string when the bytes are UTF-8, else a copy that does not alias the chunk. */
function decode(v: Uint8Array): string | Uint8Array {
  if (isUtf8(v)) return Buffer.from(v.buffer, v.byteOffset, v.length).toString("utf8");
  return new Uint8Array(v);
}

/** A value cut at a limit: text cut inside a UTF-8 sequence loses the partial sequence instead of becoming bytes. */
function cut(v: Uint8Array): string | Uint8Array {
  for (let k = 0; k <= 3 && k <= v.length; k++) {
    if (isUtf8(v.subarray(0, v.length - k))) return decode(v.subarray(0, v.length - k));
  }
  return decode(v);
}

/** Stable insertion sort of three parallel arrays by rank (they are short and nearly sorted). */
function sortByRank(names: string[], values: (string | Uint8Array)[], ranks: number[]): void {
  for (let i = 1; i < ranks.length; i++) {
    const r = ranks[i]!;
    const name = names[i]!;
    const value = values[i]!;
    let j = i - 1;
    for (; j >= 0 && ranks[j]! > r; j--) {
      ranks[j + 1] = ranks[j]!;
      names[j + 1] = names[j]!;
      values[j + 1] = values[j]!;
    }
    ranks[j + 1] = r;
    names[j + 1] = name;
    values[j + 1] = value;
  }
}

function join(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function notAField(c: number): string {
  return `line is not a field: byte 0x${c.toString(16).padStart(2, "0")} cannot be part of a field name`;
}
