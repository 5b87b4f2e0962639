import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  decodeLine,
  detectFormat,
  PartialMerger,
  type DecodedLine,
  type LogFormat,
  type MergedRecord,
} from "../src/sources/docker/codec.ts";
import { ContainerWriter, criEntry } from "./support/docker-writer.ts";

const T = "2024-01-02T03:04:05.123456789Z";
const MiB = 1024 * 1024;
const tmp = mkdtempSync(join(tmpdir(), "nagare-docker-codec-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function b(...parts: (string | number[] | Uint8Array)[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p as Uint8Array))));
}
function dec(line: string | Buffer, format: LogFormat = "json-file"): DecodedLine {
  return decodeLine(typeof line === "string" ? Buffer.from(line) : line, format);
}
function json(log: string, stream = "stdout", time = T, attrs?: Record<string, string>): string {
  return JSON.stringify({ log, stream, ...(attrs ? { attrs } : {}), time });
}

interface Run {
  records: MergedRecord[];
  /** safeOffset after each line */
  safe: number[];
  /** end offset of each line */
  ends: number[];
}

/** Feeds every line of `file` (the last one even without its newline) through a merger. */
function run(file: Uint8Array, format: LogFormat, maxBytes = MiB, merger = new PartialMerger(maxBytes), from = 0): Run {
  const buf = Buffer.from(file);
  const out: Run = { records: [], safe: [], ends: [] };
  let pos = from;
  while (pos < buf.length) {
    let nl = buf.indexOf(10, pos);
    if (nl < 0) nl = buf.length;
    const end = Math.min(nl + 1, buf.length);
    const r = merger.push(decodeLine(buf.subarray(pos, nl), format), end);
    if (r) out.records.push(r);
    out.safe.push(merger.safeOffset);
    out.ends.push(end);
    pos = end;
  }
  return out;
}

// ---- decodeLine: json-file ------------------------------------------------------------------------------

describe("json-file lines", () => {
  test("a full line, as dockerd escapes it", () => {
    // (non-ASCII outside String.raw: Bun's transpiler would turn it into \u escapes there)
    const line = String.raw`{"log":"GET /a?x=1\u0026y=2 \u003cb\u003e \"q\" \\ \u0009tab ` + "é 日本" + String.raw`\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`;
    expect(Buffer.from(line).includes(Buffer.from("日本"))).toBe(true);
    expect(dec(line)).toEqual({ stream: "stdout", time: T, text: 'GET /a?x=1&y=2 <b> "q" \\ \ttab é 日本', partial: false });
  });

  test("a partial piece lacks the trailing newline", () => {
    expect(dec(json("abc", "stderr"))).toEqual({ stream: "stderr", time: T, text: "abc", partial: true });
  });

  test("an empty line of output is a full line with empty text", () => {
    expect(dec(json("\n"))).toEqual({ stream: "stdout", time: T, text: "", partial: false });
  });

  test("a trailing \\r (CRLF output) is kept: only the newline goes", () => {
    expect(dec(json("dos\r\n")).text).toBe("dos\r");
  });

  test("attrs from --log-opt labels/env", () => {
    const d = dec(`{"log":"x\\n","stream":"stdout","attrs":{"com.example.team":"web","env":"prod"},"time":"${T}"}`);
    expect(d).toEqual({ stream: "stdout", time: T, text: "x", partial: false, attrs: { "com.example.team": "web", env: "prod" } });
  });

  test("corrupt JSON: a record of its own with the raw line", () => {
    const raw = `{"log":"abc\\n","stream":"std`;
    expect(dec(raw)).toEqual({ stream: "", time: "", text: raw, partial: false, error: "invalid JSON (truncated entry)" });
    expect(dec(`{"log":"a\n"}`).error).toBe("invalid JSON");
    expect(dec("plain text").error).toBe("not a JSON object");
    expect(dec("[1,2]").error).toBe("not a JSON object");
    expect(dec("").error).toBe("empty line");
  });

  test("wrong shape", () => {
    expect(dec(`{"log":1,"stream":"stdout","time":"${T}"}`).error).toContain('"log"');
    expect(dec(`{"stream":"stdout","time":"${T}"}`).error).toContain('"log"');
    expect(dec(`{"log":"a\\n","time":"${T}"}`).error).toContain('"stream"');
    expect(dec(`{"log":"a\\n","stream":"stdout","time":5}`).error).toContain('"time"');
    expect(dec(`{"log":"a\\n","stream":"stdout","attrs":[],"time":"${T}"}`).error).toContain('"attrs"');
    const d = dec(`{"log":"a","stream":"stdout"}`);
    expect(d.partial).toBe(false);
    expect(d.text).toBe(`{"log":"a","stream":"stdout"}`);
  });

  test("invalid UTF-8: flagged, shipped lossy, never merged", () => {
    const line = b(`{"log":"a`, [0xff, 0xc3], `b","stream":"stderr","time":"${T}"}`);
    expect(dec(line)).toEqual({ stream: "stderr", time: T, text: "a\ufffd\ufffdb", partial: false, error: "invalid UTF-8" });
    const broken = b(`{"log":"a`, [0xff], `b\\n","stre`);
    const d = dec(broken);
    expect(d.error).toBe("invalid JSON (truncated entry)");
    expect(d.text).toBe(`{"log":"a\ufffdb\\n","stre`);
  });

  test("a Uint8Array view into a larger chunk", () => {
    const chunk = b("xx", json("view\n"), "\nyy");
    const view = new Uint8Array(chunk.buffer, chunk.byteOffset + 2, chunk.length - 5);
    expect(decodeLine(view, "json-file").text).toBe("view");
  });
});

// ---- decodeLine: CRI -------------------------------------------------------------------------------------

describe("CRI lines", () => {
  test("full and partial", () => {
    expect(dec(`${T} stdout F hello world`, "cri")).toEqual({ stream: "stdout", time: T, text: "hello world", partial: false });
    expect(dec(`2024-01-02T12:04:05.12345+09:00 stderr P part one `, "cri")).toEqual({
      stream: "stderr",
      time: "2024-01-02T12:04:05.12345+09:00",
      text: "part one ",
      partial: true,
    });
  });

  test("the message is raw: spaces, braces and escapes stay as written", () => {
    expect(dec(`${T} stdout F   {"a":"b\\n"}  `, "cri").text).toBe(`  {"a":"b\\n"}  `);
  });

  test("empty messages, extra tags, times without fraction", () => {
    expect(dec(`${T} stdout F `, "cri")).toEqual({ stream: "stdout", time: T, text: "", partial: false });
    expect(dec(`${T} stdout F`, "cri").text).toBe("");
    expect(dec(`2024-01-02T03:04:05Z stdout P:x y`, "cri")).toMatchObject({ partial: true, text: "y" });
    expect(dec(`2024-01-02T03:04:05Z stdout F:x y`, "cri")).toMatchObject({ partial: false, text: "y" });
  });

  test("bad prefixes are corrupt lines", () => {
    for (const line of [
      "hello",
      "hello world how are you",
      `2024-01-02 stdout F x`,
      `2024-01-02T03:04:05 stdout F x`, // no zone
      `2024-01-02T03:04:05.1234567890Z stdout F x`, // 10 digits
      `${T} stdin F x`,
      `${T} stdout X x`,
      `${T} stdout FF x`,
      `${T}  stdout F x`,
    ]) {
      const d = dec(line, "cri");
      expect(d.error).toStartWith("bad CRI prefix");
      expect(d.text).toBe(line);
      expect(d.partial).toBe(false);
    }
  });

  test("invalid UTF-8 in a message is the container's output: raw bytes kept for the merge", () => {
    const d = dec(b(`${T} stdout F a`, [0xff], "b"), "cri");
    expect(d.error).toBeUndefined();
    expect(d.text).toBe("a\ufffdb");
    expect(Array.from(d.bytes!)).toEqual([0x61, 0xff, 0x62]);
    const r = new PartialMerger(MiB).push(d, 100)!;
    expect(r.error).toBe("invalid UTF-8");
    expect(r.text).toBe("a\ufffdb");
  });
});

describe("detectFormat", () => {
  test("json-file, CRI, neither", () => {
    expect(detectFormat(json("x\n"))).toBe("json-file");
    expect(detectFormat(Buffer.from("  " + json("x\n")))).toBe("json-file");
    expect(detectFormat(b([0xef, 0xbb, 0xbf], json("x\n")))).toBe("json-file");
    expect(detectFormat(`${T} stdout F hi`)).toBe("cri");
    expect(detectFormat(Buffer.from(`2024-01-02T03:04:05+01:00 stderr P `))).toBe("cri");
    expect(detectFormat("hello world")).toBeUndefined();
    expect(detectFormat("")).toBeUndefined();
    expect(detectFormat("   ")).toBeUndefined();
  });
});

// ---- merging -------------------------------------------------------------------------------------------------

function container(format: "json-file" | "cri", opts: { maxSize?: number; maxFiles?: number } = {}): ContainerWriter {
  return new ContainerWriter({ root: tmp, format, ...opts });
}

function bigLine(n: number, seed = 0): string {
  let s = "";
  for (let i = 0; s.length < n; i++) s += `${seed}:${i} lorem ipsum dolor sit amet; `;
  return s.slice(0, n);
}

describe("PartialMerger", () => {
  test("a 40 KB json-file line split by dockerd into 16 KiB pieces is one record", () => {
    const c = container("json-file");
    const text = bigLine(40_000);
    c.write("before");
    c.write(text, "stdout", new Date("2024-01-02T03:04:05.678Z"));
    c.write("after");
    const file = readFileSync(c.path);
    expect(file.toString().split("\n").length - 1).toBe(5); // 1 + 3 pieces + 1
    const { records } = run(file, "json-file");
    expect(records.map((r) => r.text)).toEqual(["before", text, "after"]);
    const big = records[1]!;
    expect(big.truncated).toBe(false);
    expect(big.time).toBe("2024-01-02T03:04:05.678Z");
    const firstEnd = file.indexOf(10) + 1;
    expect(big.startOffset).toBe(firstEnd);
    expect(big.endOffset).toBe(file.length - (records[2]!.endOffset - records[2]!.startOffset!));
  });

  test("a 2 MB line with a 1 MiB limit is cut at 1 MiB and marked; its other pieces are dropped", () => {
    const c = container("json-file");
    const text = bigLine(2_000_000, 7);
    c.write(text);
    c.write("next line");
    const file = readFileSync(c.path);
    const m = new PartialMerger(MiB);
    const { records } = run(file, "json-file", MiB, m);
    expect(records).toHaveLength(2);
    expect(records[0]!.text.length).toBe(MiB);
    expect(records[0]!.text).toBe(text.slice(0, MiB));
    expect(records[0]!.truncated).toBe(true);
    expect(records[0]!.startOffset).toBe(0);
    expect(records[1]).toMatchObject({ text: "next line", truncated: false, endOffset: file.length });
    expect(m.pendingBytes).toBe(0);
  });

  test("a merged line is never held beyond maxBytes while it is read", () => {
    const m = new PartialMerger(1000);
    let peak = 0;
    let off = 0;
    for (let i = 0; i < 50; i++) {
      off += 100;
      expect(m.push(dec(json("x".repeat(100))), off)).toBeUndefined();
      peak = Math.max(peak, m.pendingBytes);
    }
    const r = m.push(dec(json("end\n")), (off += 10))!;
    expect(peak).toBe(1000);
    expect(r.text.length).toBe(1000);
    expect(r.truncated).toBe(true);
  });

  test("the cut falls on a UTF-8 character boundary", () => {
    const m = new PartialMerger(10);
    m.push(dec(json("abcdefgh")), 10); // 8 bytes
    const r = m.push(dec(json("日本\n")), 20)!; // 3 + 3 bytes: only 2 fit, so none of 日
    expect(r.text).toBe("abcdefgh");
    expect(r.truncated).toBe(true);
    const single = new PartialMerger(4).push(dec(json("ab日本\n")), 5)!;
    expect(single).toMatchObject({ text: "ab", truncated: true });
    const exact = new PartialMerger(5).push(dec(json("ab日\n")), 5)!;
    expect(exact).toMatchObject({ text: "ab日", truncated: false });
  });

  test("CRI P pieces then F are one record with the first piece's time", () => {
    const lines = [
      `2024-01-02T03:04:05.1Z stdout P one `,
      `2024-01-02T03:04:05.2Z stdout P two `,
      `2024-01-02T03:04:05.3Z stdout F three`,
      `2024-01-02T03:04:05.4Z stdout F solo`,
    ];
    const { records } = run(Buffer.from(lines.join("\n") + "\n"), "cri");
    expect(records.map((r) => [r.time, r.text])).toEqual([
      ["2024-01-02T03:04:05.1Z", "one two three"],
      ["2024-01-02T03:04:05.4Z", "solo"],
    ]);
  });

  test("a CRI line written by containerd's 16 KiB split, with a character cut between pieces", () => {
    const c = container("cri");
    const text = "x".repeat(16383) + "é" + bigLine(20_000); // é straddles the first cut
    c.write(text, "stderr");
    const file = readFileSync(c.path);
    const tags = file.toString("latin1").split("\n").filter(Boolean).map((l) => l.split(" ")[2]);
    expect(tags).toEqual(["P", "P", "F"]);
    const { records } = run(file, "cri");
    expect(records).toHaveLength(1);
    expect(records[0]!.text).toBe(text);
    expect(records[0]!.error).toBeUndefined();
    expect(records[0]!.stream).toBe("stderr");
  });

  test("stdout and stderr merge independently when their pieces interleave", () => {
    const lines = [
      json("out-1 ", "stdout", "2024-01-01T00:00:01Z"),
      json("err-1 ", "stderr", "2024-01-01T00:00:02Z"),
      json("out-2 ", "stdout", "2024-01-01T00:00:01Z"),
      json("err-2\n", "stderr", "2024-01-01T00:00:02Z"),
      json("err-full\n", "stderr", "2024-01-01T00:00:03Z"),
      json("out-3\n", "stdout", "2024-01-01T00:00:01Z"),
    ];
    const file = Buffer.from(lines.join("\n") + "\n");
    const { records, safe, ends } = run(file, "json-file");
    expect(records.map((r) => [r.stream, r.text, r.time])).toEqual([
      ["stderr", "err-1 err-2", "2024-01-01T00:00:02Z"],
      ["stderr", "err-full", "2024-01-01T00:00:03Z"],
      ["stdout", "out-1 out-2 out-3", "2024-01-01T00:00:01Z"],
    ]);
    expect(records.map((r) => r.startOffset)).toEqual([ends[0], ends[3], 0]);
    // stdout's merge runs from the first line to the last: no position in between is safe
    expect(safe).toEqual([0, 0, 0, 0, 0, file.length]);
  });

  test("a corrupt line is a record of its own and does not break merges in progress", () => {
    const lines = [json("a", "stdout"), `{"log":"garbage`, json("b\n", "stdout"), json("c\n", "stderr")];
    const file = Buffer.from(lines.join("\n") + "\n");
    const { records, safe, ends } = run(file, "json-file");
    expect(records.map((r) => [r.text, r.error])).toEqual([
      [`{"log":"garbage`, "invalid JSON (truncated entry)"],
      ["ab", undefined],
      ["c", undefined],
    ]);
    expect(records[0]!.startOffset).toBe(ends[0]);
    expect(safe).toEqual([0, 0, ends[2]!, ends[3]!]);
  });

  test("a truncated last line (an interrupted write) is a corrupt record; the lines before it are intact", () => {
    const c = container("json-file");
    c.write("one");
    c.write("two");
    c.writeRaw(`{"log":"thr`);
    const { records } = run(readFileSync(c.path), "json-file");
    expect(records.map((r) => r.text)).toEqual(["one", "two", `{"log":"thr`]);
    expect(records[2]!.error).toBe("invalid JSON (truncated entry)");
  });

  test("attrs of the first piece travel with the merged record", () => {
    const m = new PartialMerger(MiB);
    m.push(dec(json("a", "stdout", T, { tag: "web" })), 10);
    expect(m.push(dec(json("b\n", "stdout", T, { tag: "web" })), 20)).toMatchObject({ text: "ab", attrs: { tag: "web" } });
  });

  test("flush ends merges that will never get their last piece", () => {
    const m = new PartialMerger(MiB);
    m.push(dec(json("x\n")), 10);
    m.push(dec(json("tail without newline")), 30);
    expect(m.safeOffset).toBe(10);
    expect(m.pendingBytes).toBe(20);
    expect(m.flush()).toEqual([{ stream: "stdout", time: T, text: "tail without newline", truncated: false, endOffset: 30, startOffset: 10 }]);
    expect(m.safeOffset).toBe(30);
    expect(m.pendingBytes).toBe(0);
  });

  test("safeOffset never falls inside a merge: resuming there reproduces exactly the later records", () => {
    // random interleaving of both streams, lines of 0..3 partial pieces, some corrupt lines
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (const format of ["json-file", "cri"] as const) {
      const queues: Record<string, string[]> = { stdout: [], stderr: [] };
      for (const stream of ["stdout", "stderr"]) {
        for (let i = 0; i < 150; i++) {
          const pieces = rnd(4);
          for (let p = 0; p <= pieces; p++) {
            const last = p === pieces;
            const text = `${stream}-${i}-${p}`;
            const time = `2024-01-01T00:00:${String(i % 60).padStart(2, "0")}Z`;
            queues[stream]!.push(
              format === "cri"
                ? criEntry(Buffer.from(text), stream, last ? "F" : "P", time).toString().slice(0, -1)
                : json(last ? text + "\n" : text, stream, time),
            );
          }
        }
      }
      const lines: string[] = [];
      while (queues.stdout!.length + queues.stderr!.length > 0) {
        const q = queues.stdout!.length === 0 ? queues.stderr! : queues.stderr!.length === 0 ? queues.stdout! : rnd(2) ? queues.stdout! : queues.stderr!;
        lines.push(q.shift()!);
        if (rnd(40) === 0) lines.push("### corrupt ###");
      }
      const file = Buffer.from(lines.join("\n") + "\n");
      const all = run(file, format);
      expect(all.records.filter((r) => !r.error)).toHaveLength(300);
      const safePoints = [...new Set(all.safe)];
      expect(safePoints.length).toBeGreaterThan(5);
      for (const s of safePoints) {
        expect(s === 0 || all.ends.includes(s)).toBe(true);
        const resumed = run(file, format, MiB, new PartialMerger(MiB, s), s);
        const expected = all.records.filter((r) => r.startOffset! >= s);
        expect(resumed.records).toEqual(expected);
      }
    }
  });

  test("snapshot/restore carries a merge across a rotation (pieces in .1 and in the new file)", () => {
    const c = container("json-file", { maxSize: 20_000, maxFiles: 3 });
    const text = bigLine(40_000, 3);
    c.write(text);
    c.write("after");
    const old = readFileSync(`${c.path}.1`);
    const cur = readFileSync(c.path);
    expect(old.toString().split("\n").length - 1).toBe(2); // two 16 KiB pieces went to the old file
    const a = new PartialMerger(MiB);
    expect(run(old, "json-file", MiB, a).records).toEqual([]);
    expect(a.safeOffset).toBe(0);
    const snap = a.snapshot();
    // the snapshot is plain data (json-file pieces are text)
    const bMerger = new PartialMerger(MiB);
    bMerger.restore(JSON.parse(JSON.stringify(snap)));
    expect(bMerger.pendingBytes).toBe(2 * 16384);
    const r = run(cur, "json-file", MiB, bMerger);
    expect(r.records.map((x) => x.text)).toEqual([text, "after"]);
    expect(r.records[0]!.startOffset).toBeUndefined();
    expect(r.records[0]!.endOffset).toBe(cur.indexOf(10) + 1);
    expect(r.safe[0]).toBe(cur.indexOf(10) + 1);
  });

  test("snapshot/restore with CRI byte pieces; restore refuses what is not a snapshot", () => {
    const a = new PartialMerger(MiB);
    a.push(dec(b(`${T} stdout P x`, [0xc3]), "cri"), 10); // the first byte of é
    const bMerger = new PartialMerger(MiB);
    bMerger.restore(structuredClone(a.snapshot()));
    expect(bMerger.push(dec(b(`${T} stdout F `, [0xa9], "y"), "cri"), 20)).toMatchObject({ text: "xéy", time: T });
    expect(() => bMerger.restore({ pending: [] })).toThrow();
    expect(() => bMerger.restore(null)).toThrow();
  });
});
