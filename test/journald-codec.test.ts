import { describe, expect, test } from "bun:test";
import { heapStats } from "bun:jsc";
import { isUtf8 } from "node:buffer";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ExportParser,
  type ExportEntry,
  type ExportParserLimits,
  type MalformedEntry,
} from "../src/sources/journald/codec.ts";

// ---- building streams -------------------------------------------------------------------------------------

const enc = new TextEncoder();
type Part = string | Uint8Array;

function bytes(...parts: Part[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(enc.encode(p)) : Buffer.from(p))));
}
function txt(name: string, value: Part): Buffer {
  return bytes(name, "=", value, "\n");
}
function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}
function bin(name: string, value: Part): Buffer {
  const v = typeof value === "string" ? Buffer.from(value) : Buffer.from(value);
  return bytes(name, "\n", u64(v.length), v, "\n");
}
function entry(...fields: Buffer[]): Buffer {
  return bytes(...fields, "\n");
}
function header(i: number): Buffer[] {
  return [
    txt("__CURSOR", `s=739ad463;i=${i};b=6c7c6013;m=4fc7${i};t=4c508a${i};x=d3e5`),
    txt("__REALTIME_TIMESTAMP", String(1342540861416409 + i)),
    txt("__MONOTONIC_TIMESTAMP", String(21415215982 + i)),
    txt("_BOOT_ID", "6c7c6013a26343b29e964691ff25d04c"),
  ];
}

const LIMITS: ExportParserLimits = { maxFieldBytes: 1 << 20, maxEntryBytes: 4 << 20 };

interface Result {
  out: ExportEntry[];
  bad: MalformedEntry[];
}

/** Parses `stream` cut at the given offsets, then ends it. */
function parse(stream: Uint8Array, cuts: number[] = [], limits = LIMITS, p = new ExportParser(limits)): Result {
  const out: ExportEntry[] = [];
  const bad: MalformedEntry[] = [];
  let from = 0;
  for (const c of [...cuts, stream.length]) {
    p.push(stream.subarray(from, c), out, bad);
    from = c;
  }
  p.end(out, bad);
  return { out, bad };
}

function chunked(stream: Uint8Array, size: number, limits = LIMITS): Result {
  const cuts: number[] = [];
  for (let o = size; o < stream.length; o += size) cuts.push(o);
  return parse(stream, cuts, limits);
}

/** A comparable form: byte values as hex. */
function norm(r: Result): unknown {
  const val = (v: unknown): unknown =>
    v instanceof Uint8Array ? { hex: Buffer.from(v).toString("hex") } : Array.isArray(v) ? v.map(val) : v;
  return {
    out: r.out.map((e) => ({
      ...e,
      fields: Object.fromEntries(Object.entries(e.fields).map(([k, v]) => [k, val(v)])),
    })),
    bad: r.bad,
  };
}

/** Deterministic PRNG so a failure can be reproduced. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the fixture used for split invariance ----------------------------------------------------------------

const FIXTURE = bytes(
  "\n", // a leading blank line
  entry(...header(1), txt("MESSAGE", "héllo wörld — 日本語 🎉"), txt("PRIORITY", "6")),
  entry(
    ...header(2),
    bin("DATA", Uint8Array.from([0x00, 0x0a, 0xff, 0x41, 0x0a, 0x0a, 0xfe])),
    bin("TRACE", "line one\nline two\n\n\tend"),
    txt("TAG", "a"),
    txt("TAG", "b"),
    bin("TAG", Uint8Array.from([0xc3])),
  ),
  "\n\n", // extra blank lines between entries
  entry(...header(3), txt("message", "lowercase name"), txt("X", "y")), // malformed
  entry(...header(4), txt("EMPTY", ""), txt("EQ", "a=b=c"), bin("ZERO", "")),
  entry(txt("ONLY", "no address fields")),
  bytes(...header(5), txt("LAST", "no blank line at EOF")),
);

// ---- well-formed input --------------------------------------------------------------------------------------

describe("ExportParser: well-formed entries", () => {
  test("text fields, address fields and byte accounting", () => {
    const a = entry(...header(7), txt("MESSAGE", "hello"), txt("_PID", "42"));
    const b = entry(txt("MESSAGE", "second"));
    const { out, bad } = parse(bytes(a, b));
    expect(bad).toEqual([]);
    expect(out).toHaveLength(2);
    const e = out[0]!;
    expect(e.fields).toEqual({
      __CURSOR: "s=739ad463;i=7;b=6c7c6013;m=4fc77;t=4c508a7;x=d3e5",
      __REALTIME_TIMESTAMP: "1342540861416416",
      __MONOTONIC_TIMESTAMP: "21415215989",
      _BOOT_ID: "6c7c6013a26343b29e964691ff25d04c",
      MESSAGE: "hello",
      _PID: "42",
    });
    expect(e.cursor).toBe("s=739ad463;i=7;b=6c7c6013;m=4fc77;t=4c508a7;x=d3e5");
    expect(e.realtimeUs).toBe("1342540861416416");
    expect(e.binaryFields).toBeUndefined();
    expect(e.truncated).toBe(false);
    expect(e.bytes).toBe(a.length);
    expect(e.end).toBe(a.length);
    expect(out[1]!.cursor).toBeUndefined();
    expect(out[1]!.realtimeUs).toBeUndefined();
    expect(out[1]!.bytes).toBe(b.length);
    expect(out[1]!.end).toBe(a.length + b.length);
  });

  test("binary fields with newline, NUL and 0xFF bytes are Uint8Array; UTF-8 ones are strings", () => {
    const raw = Uint8Array.from([0x61, 0x0a, 0x00, 0xff, 0x0a, 0x0a, 0x62]);
    const { out, bad } = parse(entry(txt("A", "1"), bin("RAW", raw), bin("TEXT", "two\nlines\ttab"), txt("B", "2")));
    expect(bad).toEqual([]);
    const f = out[0]!.fields;
    expect(f.RAW).toBeInstanceOf(Uint8Array);
    expect(Array.from(f.RAW as Uint8Array)).toEqual(Array.from(raw));
    expect(f.TEXT).toBe("two\nlines\ttab");
    expect(f.B).toBe("2");
    expect(out[0]!.binaryFields).toEqual(["RAW"]);
  });

  test("values never alias the caller's chunk buffer", () => {
    const stream = entry(bin("RAW", Uint8Array.from([0xff, 0x00, 0xfe])), txt("BAD", Uint8Array.from([0xff, 0x41])));
    const p = new ExportParser(LIMITS);
    const out: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    const chunk = Buffer.from(stream);
    p.push(chunk, out, bad);
    chunk.fill(0x58); // the caller reuses its buffer
    expect(Array.from(out[0]!.fields.RAW as Uint8Array)).toEqual([0xff, 0x00, 0xfe]);
    expect(Array.from(out[0]!.fields.BAD as Uint8Array)).toEqual([0xff, 0x41]);
  });

  test("a reused chunk buffer gives the same result for every chunk size", () => {
    const whole = norm(parse(FIXTURE));
    for (const size of [1, 2, 3, 7, 8, 9, 13, 64, 100]) {
      const p = new ExportParser(LIMITS);
      const out: ExportEntry[] = [];
      const bad: MalformedEntry[] = [];
      const scratch = Buffer.alloc(size);
      for (let o = 0; o < FIXTURE.length; o += size) {
        const n = FIXTURE.copy(scratch, 0, o, Math.min(o + size, FIXTURE.length));
        p.push(scratch.subarray(0, n), out, bad);
        scratch.fill(0xaa);
      }
      p.end(out, bad);
      expect(norm({ out, bad })).toEqual(whole);
    }
  });

  test("repeated fields become arrays in order of appearance", () => {
    const { out } = parse(
      entry(txt("TAG", "a"), txt("X", "1"), txt("TAG", "b"), bin("TAG", Uint8Array.from([0xff])), txt("TAG", "c")),
    );
    const tags = out[0]!.fields.TAG as unknown[];
    expect(tags).toHaveLength(4);
    expect(tags[0]).toBe("a");
    expect(tags[1]).toBe("b");
    expect(Array.from(tags[2] as Uint8Array)).toEqual([0xff]);
    expect(tags[3]).toBe("c");
    expect(out[0]!.binaryFields).toEqual(["TAG"]);
  });

  test("text values are UTF-8; invalid UTF-8 in a text line stays bytes and is listed", () => {
    const invalid = Uint8Array.from([0x6f, 0x6b, 0xc3, 0x28, 0xff]);
    const { out, bad } = parse(
      entry(txt("A", "ASCII"), txt("U", "żółw 日本 🎉"), txt("BAD", invalid), txt("B", "after")),
    );
    expect(bad).toEqual([]);
    const f = out[0]!.fields;
    expect(f.U).toBe("żółw 日本 🎉");
    expect(Array.from(f.BAD as Uint8Array)).toEqual(Array.from(invalid));
    expect(f.B).toBe("after");
    expect(out[0]!.binaryFields).toEqual(["BAD"]);
  });

  test("multiple blank lines between entries are tolerated and counted in the next entry's bytes", () => {
    const a = entry(txt("A", "1"));
    const b = entry(txt("B", "2"));
    const { out, bad } = parse(bytes("\n\n", a, "\n\n\n", b, "\n"));
    expect(bad).toEqual([]);
    expect(out.map((e) => e.fields)).toEqual([{ A: "1" }, { B: "2" }]);
    expect(out.map((e) => e.bytes)).toEqual([2 + a.length, 3 + b.length]);
  });

  test("a field over 64 KiB arrives whole across 64 KiB chunks", () => {
    const big = "x".repeat(200_000) + "é" + "y".repeat(70_000);
    const blob = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    const stream = entry(...header(1), txt("MESSAGE", big), bin("BLOB", blob), txt("AFTER", "ok"));
    const { out, bad } = chunked(stream, 65536);
    expect(bad).toEqual([]);
    expect(out[0]!.fields.MESSAGE).toBe(big);
    expect(Buffer.from(out[0]!.fields.BLOB as Uint8Array).equals(Buffer.from(blob))).toBe(true);
    expect(out[0]!.fields.AFTER).toBe("ok");
    expect(out[0]!.truncated).toBe(false);
  });

  test("names that prefix each other and changing field orders parse correctly (prediction is only a hint)", () => {
    const stream = bytes(
      entry(txt("A", "1"), txt("B", "2"), bin("C", "c")),
      entry(txt("AB", "1"), txt("B", "2"), txt("C", "3")),
      entry(txt("A", "1"), bin("AB", "x"), txt("A", "2")),
      entry(txt("B", "2"), txt("A", "1")),
    );
    const { out, bad } = parse(stream);
    expect(bad).toEqual([]);
    expect(out.map((e) => e.fields)).toEqual([
      { A: "1", B: "2", C: "c" },
      { AB: "1", B: "2", C: "3" },
      { A: ["1", "2"], AB: "x" },
      { B: "2", A: "1" },
    ]);
  });

  test("fields keep one key order across entries; repeated values keep their order of appearance", () => {
    const { out } = parse(
      bytes(
        entry(txt("A", "1"), txt("T", "x"), txt("B", "2"), txt("C", "3")),
        entry(txt("C", "3"), txt("T", "y"), txt("B", "2"), txt("A", "1"), txt("T", "z")),
      ),
    );
    expect(Object.keys(out[1]!.fields)).toEqual(["A", "T", "B", "C"]);
    expect(out[1]!.fields.T).toEqual(["y", "z"]);
    expect(out[1]!.fields.C).toBe("3");
  });

  test("many distinct names (hash slot collisions) keep their values", () => {
    const names = Array.from({ length: 3000 }, (_, i) => `F_${i.toString(36).toUpperCase()}`);
    const fields = names.map((n, i) => txt(n, String(i)));
    const { out } = parse(bytes(entry(...fields), entry(...fields.slice().reverse())));
    for (const e of out) {
      expect(Object.keys(e.fields)).toHaveLength(names.length);
      names.forEach((n, i) => expect(e.fields[n]).toBe(String(i)));
    }
  });
});

// ---- limits -------------------------------------------------------------------------------------------------

describe("ExportParser: limits", () => {
  const small: ExportParserLimits = { maxFieldBytes: 100, maxEntryBytes: 10_000 };

  test("a text or binary value over maxFieldBytes is cut to its first bytes and marks the entry", () => {
    const long = "0123456789".repeat(50);
    const blob = new Uint8Array(500).fill(0xff);
    const stream = bytes(entry(txt("M", long), bin("B", blob), txt("N", "next")), entry(txt("OK", "fine")));
    for (const size of [stream.length, 1, 7, 64]) {
      const { out, bad } = chunked(stream, size, small);
      expect(bad).toEqual([]);
      expect(out[0]!.fields.M).toBe(long.slice(0, 100));
      expect((out[0]!.fields.B as Uint8Array).length).toBe(100);
      expect(out[0]!.fields.N).toBe("next");
      expect(out[0]!.truncated).toBe(true);
      expect(out[0]!.bytes).toBe(stream.length - entry(txt("OK", "fine")).length);
      expect(out[1]!.truncated).toBe(false);
    }
  });

  test("a text value cut inside a UTF-8 sequence stays a string without the partial character", () => {
    const { out } = parse(entry(txt("M", "a" + "é".repeat(100))), [], small); // 1 + 200 bytes
    expect(out[0]!.fields.M).toBe("a" + "é".repeat(49)); // 99 bytes: the 100th would split a character
    expect(out[0]!.binaryFields).toBeUndefined();
  });

  test("an entry over maxEntryBytes keeps the first values, cuts the one reaching the limit, drops the rest", () => {
    const limits = { maxFieldBytes: 1000, maxEntryBytes: 300 };
    const fields = Array.from({ length: 10 }, (_, i) => txt(`F${i}`, "v".repeat(60)));
    const stream = bytes(entry(...header(1), ...fields), entry(...header(2), txt("M", "small")));
    const { out, bad } = parse(stream, [], limits);
    expect(bad).toEqual([]);
    const e = out[0]!;
    expect(e.truncated).toBe(true);
    expect(e.cursor).toBe("s=739ad463;i=1;b=6c7c6013;m=4fc71;t=4c508a1;x=d3e5");
    let retained = 0;
    for (const [k, v] of Object.entries(e.fields)) retained += k.length + (v as string).length + 2;
    expect(retained).toBeLessThanOrEqual(300);
    expect(e.fields.F9).toBeUndefined();
    expect(e.bytes).toBe(stream.length - entry(...header(2), txt("M", "small")).length);
    expect(out[1]!.truncated).toBe(false);
    expect(out[1]!.fields.M).toBe("small");
  });

  test("the cursor is kept even when the entry budget is exhausted before it", () => {
    const { out } = parse(entry(txt("BIG", "x".repeat(500)), ...header(1)), [], { maxFieldBytes: 1000, maxEntryBytes: 50 });
    expect(out[0]!.cursor).toBe("s=739ad463;i=1;b=6c7c6013;m=4fc71;t=4c508a1;x=d3e5");
    expect(out[0]!.realtimeUs).toBe("1342540861416410");
    expect(out[0]!.fields._BOOT_ID).toBeUndefined();
  });

  test("an entry whose every value was dropped is still emitted", () => {
    const { out } = parse(entry(txt("A", "1"), txt("B", "2")), [], { maxFieldBytes: 10, maxEntryBytes: 0 });
    expect(out).toHaveLength(1);
    expect(out[0]!.fields).toEqual({});
    expect(out[0]!.truncated).toBe(true);
  });

  test("a binary field declaring 1 GiB is skipped in constant memory", () => {
    const limits = { maxFieldBytes: 4096, maxEntryBytes: 65536 };
    const p = new ExportParser(limits);
    const out: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    const GiB = 1 << 30;
    p.push(bytes(...header(1), "HUGE\n", u64(GiB)), out, bad);
    const chunk = Buffer.alloc(1 << 20, 0xff);
    let maxPending = 0;
    for (let sent = 0; sent < GiB; sent += chunk.length) {
      p.push(chunk, out, bad);
      maxPending = Math.max(maxPending, p.pendingBytes);
    }
    p.push(bytes("\n", txt("AFTER", "x"), "\n", entry(txt("NEXT", "ok"))), out, bad);
    p.end(out, bad);
    expect(bad).toEqual([]);
    expect(maxPending).toBeLessThan(8192);
    expect(out).toHaveLength(2);
    expect((out[0]!.fields.HUGE as Uint8Array).length).toBe(4096);
    expect(out[0]!.fields.AFTER).toBe("x");
    expect(out[0]!.truncated).toBe(true);
    expect(out[0]!.bytes).toBeGreaterThan(GiB);
    expect(out[1]!.fields).toEqual({ NEXT: "ok" });
  });

  test("a 10 MB text line is skipped in constant memory", () => {
    const p = new ExportParser({ maxFieldBytes: 1000, maxEntryBytes: 65536 });
    const out: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    p.push(Buffer.from("MESSAGE="), out, bad);
    const chunk = Buffer.alloc(65536, "a");
    let maxPending = 0;
    for (let sent = 0; sent < 10_000_000; sent += chunk.length) {
      p.push(chunk, out, bad);
      maxPending = Math.max(maxPending, p.pendingBytes);
    }
    p.push(Buffer.from("\nX=1\n\n"), out, bad);
    expect(maxPending).toBeLessThanOrEqual(1000 + 16);
    expect((out[0]!.fields.MESSAGE as string).length).toBe(1000);
    expect(out[0]!.fields.X).toBe("1");
    expect(p.pendingBytes).toBe(0);
  });
});

// ---- malformed input ----------------------------------------------------------------------------------------

describe("ExportParser: malformed entries", () => {
  const good = entry(...header(9), txt("MESSAGE", "good neighbour"));
  const before = entry(...header(8), txt("MESSAGE", "before"));
  const cases: [string, Buffer, RegExp, boolean][] = [
    ["lowercase field name", bytes(...header(1), "message=x\n\n"), /byte 0x6d cannot be part of a field name/, true],
    ["line that is neither a field nor a header", bytes(...header(1), "HELLO WORLD\n\n"), /byte 0x20/, true],
    ["empty field name", bytes("=value\n", ...header(1), "\n"), /empty field name/, false],
    ["name starting with a digit", bytes(...header(1), "1ABC=x\n\n"), /starts with a digit/, true],
    ["name longer than 64 bytes", bytes(...header(1), "A".repeat(65), "=x\n\n"), /longer than 64/, true],
    ["binary value not followed by a newline", bytes(...header(1), "B\n", u64(3), "abcX", "\n\n"), /not followed by a newline/, true],
    ["binary length of 2^48", bytes(...header(1), "B\n", u64(2n ** 48n), "abc\n\n"), /2\^48/, true],
    ["header-like line right before the blank line", bytes(...header(1), "GARBAGE\n\n"), /GARBAGE declares a length/, true],
    ["control byte in a name", bytes(...header(1), "A\tB=1\n\n"), /byte 0x09/, true],
  ];

  for (const [what, badEntry, reason, hasCursor] of cases) {
    test(`${what}: reported, and its neighbours still parse`, () => {
      const stream = bytes(before, badEntry, good);
      for (const size of [stream.length, 1, 5, 8, 31]) {
        const { out, bad } = chunked(stream, size);
        expect(out.map((e) => e.fields.MESSAGE)).toEqual(["before", "good neighbour"]);
        expect(bad).toHaveLength(1);
        expect(bad[0]!.reason).toMatch(reason);
        expect(bad[0]!.cursor).toBe(hasCursor ? "s=739ad463;i=1;b=6c7c6013;m=4fc71;t=4c508a1;x=d3e5" : undefined);
        expect(bad[0]!.bytes).toBe(badEntry.length);
        expect(bad[0]!.end).toBe(before.length + badEntry.length);
        expect(out[1]!.bytes).toBe(good.length);
      }
    });
  }

  test("the stream ending inside a field is malformed; ending after a complete field is an entry", () => {
    for (const cut of ["MESSAGE=no newline", "MESS", "BIN\n", "BIN\n\x05\x00", "BIN\n\x05\x00\x00\x00\x00\x00\x00\x00ab"]) {
      const { out, bad } = parse(bytes(good, txt("A", "1"), cut));
      expect(out.map((e) => e.fields.MESSAGE)).toEqual(["good neighbour"]);
      expect(bad).toEqual([
        { reason: "stream ended inside an entry", cursor: undefined, bytes: 4 + cut.length, end: good.length + 4 + cut.length },
      ]);
    }
    const { out, bad } = parse(bytes(good, txt("A", "1"), bin("B", "x")));
    expect(bad).toEqual([]);
    expect(out[1]!.fields).toEqual({ A: "1", B: "x" });
  });

  test("a malformed entry at the end of the stream is reported by end()", () => {
    const { out, bad } = parse(bytes(good, "bad line without end"));
    expect(out).toHaveLength(1);
    expect(bad).toHaveLength(1);
    expect(bad[0]!.bytes).toBe("bad line without end".length);
  });
});

// ---- state handling -----------------------------------------------------------------------------------------

describe("ExportParser: state", () => {
  test("reset() drops a partial entry; end() resets offsets", () => {
    const p = new ExportParser(LIMITS);
    const out: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    p.push(Buffer.from("A=1\nB=par"), out, bad);
    expect(p.pendingBytes).toBeGreaterThan(0);
    p.reset();
    expect(p.pendingBytes).toBe(0);
    p.push(entry(txt("C", "3")), out, bad);
    p.end(out, bad);
    expect(bad).toEqual([]);
    expect(out.map((e) => [e.fields, e.end])).toEqual([[{ C: "3" }, 5]]);
    p.push(entry(txt("D", "4")), out, bad);
    expect(out[1]!.end).toBe(5);
  });

  test("a kept value holds on to its own entry, not to the whole chunk it came from", () => {
    // Records routed to a slow sink stay in memory while their neighbours are released: if a value shared the
    // string of its 64 KiB chunk, 2000 such values would hold 128 MiB.
    const lines: Buffer[] = [];
    for (let n = 0, size = 0; size < 65536 - 1200; n++) {
      lines.push(entry(txt("__CURSOR", `c${n}`), txt("MESSAGE", "m".repeat(500))));
      size += lines[lines.length - 1]!.length;
    }
    const chunk = Buffer.alloc(65536, "\n");
    Buffer.concat(lines).copy(chunk);
    const p = new ExportParser(LIMITS);
    const kept: unknown[] = [];
    Bun.gc(true);
    const before = heapStats().extraMemorySize;
    for (let i = 0; i < 2000; i++) {
      const out: ExportEntry[] = [];
      p.push(chunk, out, []);
      kept.push(out[0]!.fields.MESSAGE);
    }
    Bun.gc(true);
    expect(kept).toHaveLength(2000);
    expect(heapStats().extraMemorySize - before).toBeLessThan(16 << 20);
  });

  test("pendingBytes is zero between entries and bounded inside one", () => {
    const p = new ExportParser({ maxFieldBytes: 100, maxEntryBytes: 1000 });
    const out: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    p.push(entry(txt("A", "x".repeat(500))), out, bad);
    expect(p.pendingBytes).toBe(0);
    p.push(Buffer.from("A=" + "x".repeat(5000)), out, bad);
    expect(p.pendingBytes).toBeLessThanOrEqual(100);
  });
});

// ---- split invariance ---------------------------------------------------------------------------------------

describe("ExportParser: any chunking gives the same result", () => {
  test("the fixture parses as expected in one piece", () => {
    const { out, bad } = parse(FIXTURE);
    expect(out.map((e) => e.cursor)).toEqual([
      header(1)[0]!.toString().slice(9, -1),
      header(2)[0]!.toString().slice(9, -1),
      header(4)[0]!.toString().slice(9, -1),
      undefined,
      header(5)[0]!.toString().slice(9, -1),
    ]);
    expect(out[0]!.fields.MESSAGE).toBe("héllo wörld — 日本語 🎉");
    expect(out[1]!.fields.TRACE).toBe("line one\nline two\n\n\tend");
    expect(out[1]!.binaryFields).toEqual(["DATA", "TAG"]);
    expect(out[2]!.fields).toMatchObject({ EMPTY: "", EQ: "a=b=c", ZERO: "" });
    expect(bad.map((b) => b.cursor)).toEqual([header(3)[0]!.toString().slice(9, -1)]);
    const total = [...out, ...bad].reduce((n, e) => n + e.bytes, 0);
    expect(total).toBe(FIXTURE.length);
  });

  test("every single split point", () => {
    const whole = norm(parse(FIXTURE));
    for (let i = 0; i <= FIXTURE.length; i++) expect(norm(parse(FIXTURE, [i]))).toEqual(whole);
  });

  test("every pair of split points around the binary entry", () => {
    const whole = norm(parse(FIXTURE));
    const start = FIXTURE.indexOf("DATA\n") - 10;
    for (let i = start; i < start + 60; i++) {
      for (let j = i; j < start + 80; j++) expect(norm(parse(FIXTURE, [i, j]))).toEqual(whole);
    }
  });

  test("1-byte chunks", () => {
    expect(norm(chunked(FIXTURE, 1))).toEqual(norm(parse(FIXTURE)));
  });

  test("random streams: random chunking matches whole-buffer parsing, which matches the generator", () => {
    const rand = rng(42);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const NAMES = ["MESSAGE", "_PID", "A", "AB", "_SYSTEMD_UNIT", "PRIORITY", "X9", "CODE_LINE"];
    for (let round = 0; round < 40; round++) {
      const parts: Buffer[] = [];
      const expected: Record<string, unknown>[] = [];
      const n = 1 + Math.floor(rand() * 30);
      for (let k = 0; k < n; k++) {
        const fields: Record<string, unknown[]> = {};
        const items: Buffer[] = [];
        const m = 1 + Math.floor(rand() * 8);
        for (let f = 0; f < m; f++) {
          const name = pick(NAMES);
          const r = rand();
          let value: string | Uint8Array;
          if (r < 0.6) {
            value = pick(["", "x", "hello world", "żółw", "🎉 emoji", "a=b", "v".repeat(Math.floor(rand() * 3000))]);
            items.push(txt(name, value));
          } else if (r < 0.8) {
            value = pick(["multi\nline", "\n", "", "tab\there"]);
            items.push(bin(name, value));
          } else {
            value = Uint8Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256));
            items.push(bin(name, value));
            if (isUtf8(value)) value = Buffer.from(value).toString("utf8"); // binary-framed text is a string
          }
          (fields[name] ??= []).push(typeof value === "string" ? value : { hex: Buffer.from(value).toString("hex") });
        }
        parts.push(entry(...items), ...(rand() < 0.1 ? [Buffer.from("\n")] : []));
        expected.push(Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, v.length === 1 ? v[0] : v])));
      }
      const stream = Buffer.concat(parts);
      const whole = parse(stream);
      expect(whole.bad).toEqual([]);
      expect((norm(whole) as { out: { fields: unknown }[] }).out.map((e) => e.fields)).toEqual(expected);
      for (let t = 0; t < 10; t++) {
        const cuts: number[] = [];
        for (let o = 0; o < stream.length; o += 1 + Math.floor(rand() * (rand() < 0.5 ? 10 : 2000))) cuts.push(o);
        expect(norm(parse(stream, cuts))).toEqual(norm(whole));
      }
    }
  });
});

// ---- real journalctl output ------------------------------------------------------------------------------

const JOURNAL_REMOTE = ["/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"].find(existsSync);
const haveSystemd = JOURNAL_REMOTE !== undefined && Bun.which("journalctl") !== null;

describe("ExportParser: real journalctl output", () => {
  test.skipIf(!haveSystemd)("parses what journalctl -o export writes for a journal made by systemd-journal-remote", () => {
    const dir = mkdtempSync(join(tmpdir(), "nagare-codec-"));
    try {
      const input = bytes(
        ...[0, 1, 2].map((i) =>
          entry(
            txt("__REALTIME_TIMESTAMP", String(1700000000000000 + i)),
            txt("_BOOT_ID", "6c7c6013a26343b29e964691ff25d04c"),
            txt("MESSAGE", `héllo 日本 ${i}`),
            txt("TABBED", "a\tb"),
            bin("MULTI", "line1\nline2\n\nline4"),
            bin("RAW", Uint8Array.from([0, 1, 0xff, 0x0a, 0x0a, 0x41])),
            txt("TAG", "x"),
            txt("TAG", "y"),
          ),
        ),
      );
      writeFileSync(join(dir, "in.export"), input);
      const made = Bun.spawnSync([JOURNAL_REMOTE!, "-o", join(dir, "out.journal"), join(dir, "in.export")]);
      expect(made.exitCode).toBe(0);
      const read = Bun.spawnSync(["journalctl", "--file", join(dir, "out.journal"), "-o", "export"]);
      expect(read.exitCode).toBe(0);
      const stream = new Uint8Array(read.stdout);
      const { out, bad } = parse(stream);
      expect(bad).toEqual([]);
      expect(out).toHaveLength(3);
      out.forEach((e, i) => {
        expect(e.cursor).toMatch(/^s=[0-9a-f]+;i=[0-9a-f]+;b=6c7c6013a26343b29e964691ff25d04c;/);
        expect(e.realtimeUs).toBe(String(1700000000000000 + i));
        expect(e.fields).toMatchObject({ MESSAGE: `héllo 日本 ${i}`, TABBED: "a\tb", MULTI: "line1\nline2\n\nline4" });
        expect(e.fields.TAG).toEqual(["x", "y"]);
        expect(Array.from(e.fields.RAW as Uint8Array)).toEqual([0, 1, 0xff, 0x0a, 0x0a, 0x41]);
        expect(e.binaryFields).toEqual(["RAW"]);
      });
      expect(out.reduce((n, e) => n + e.bytes, 0)).toBe(stream.length);
      const whole = norm({ out, bad });
      for (let i = 0; i <= stream.length; i++) expect(norm(parse(stream, [i]))).toEqual(whole);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- fuzz ---------------------------------------------------------------------------------------------------

describe("ExportParser: fuzz", () => {
  const limits = { maxFieldBytes: 256, maxEntryBytes: 2048 };
  // the entry budget, the first __CURSOR and __REALTIME_TIMESTAMP (exempt), a partial value, a carried header
  const bound = limits.maxEntryBytes + 2 * (limits.maxFieldBytes + 24) + limits.maxFieldBytes + 72;

  /** Chunked at random: no exception, bounded memory, entries that tile the stream, the same as whole. */
  function survive(stream: Uint8Array, rand: () => number): void {
    const p = new ExportParser(limits);
    const out: ExportEntry[] = [];
    const bad: MalformedEntry[] = [];
    let o = 0;
    while (o < stream.length) {
      const n = 1 + Math.floor(rand() * (rand() < 0.3 ? 4 : 300));
      p.push(stream.subarray(o, o + n), out, bad);
      o += n;
      expect(p.pendingBytes).toBeLessThanOrEqual(bound);
    }
    p.end(out, bad);
    const all = [...out, ...bad].sort((a, b) => a.end - b.end);
    let prev = 0;
    for (const e of all) {
      expect(e.end - e.bytes).toBe(prev);
      prev = e.end;
    }
    expect(prev).toBeLessThanOrEqual(stream.length);
    expect(norm({ out, bad })).toEqual(norm(parse(stream, [], limits)));
  }

  test("random bytes never throw and keep memory bounded", () => {
    const rand = rng(7);
    for (let k = 0; k < 300; k++) {
      const alphabet = [0x0a, 0x0a, 0x3d, 0x41, 0x5f, 0x30, 0x00, 0xff, 0x80, 0x20];
      const s = Uint8Array.from({ length: Math.floor(rand() * 4000) }, () =>
        rand() < 0.5 ? alphabet[Math.floor(rand() * alphabet.length)]! : Math.floor(rand() * 256),
      );
      survive(s, rand);
    }
  });

  test("mutations of a good stream never throw, keep memory bounded and the entries tile the stream", () => {
    const rand = rng(99);
    const base = Buffer.concat([FIXTURE, entry(bin("BIG", new Uint8Array(600).fill(0x41))), FIXTURE]);
    for (let k = 0; k < 400; k++) {
      const s = Buffer.from(base);
      const edits = 1 + Math.floor(rand() * 6);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rand() * s.length);
        const r = rand();
        if (r < 0.4) s[at] = Math.floor(rand() * 256);
        else if (r < 0.6) s[at] = pickByte(rand);
        else if (r < 0.8) s.copyWithin(at, Math.floor(rand() * s.length));
        else s.writeUInt32LE(Math.floor(rand() * 2 ** 32), Math.min(at, s.length - 4));
      }
      survive(s, rand);
    }
  });

  function pickByte(rand: () => number): number {
    return [0x0a, 0x3d, 0x00, 0xff][Math.floor(rand() * 4)]!;
  }
});
