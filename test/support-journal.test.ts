// Proves the helpers in test/support/journal.ts work against the real systemd tools.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import {
  DEFAULT_BOOT_ID,
  exportText,
  fieldOf,
  journalctlExport,
  parseExport,
  sequenceEntries,
  startGatewayd,
  writeJournal,
  type ExportField,
} from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";

const dec = new TextDecoder();
const dirs: { cleanup(): void }[] = [];
function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d.path;
}
afterAll(() => {
  for (const d of dirs) d.cleanup();
});

function seqs(data: Uint8Array): number[] {
  return parseExport(data).map((e) => Number(fieldOf(e, "SEQ")));
}
function range(a: number, b: number): number[] {
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

/** A child whose stdout is collected as it arrives. */
function follower(cmd: string[]) {
  const proc = Bun.spawn({ cmd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let text = "";
  const done = (async () => {
    for await (const chunk of proc.stdout) text += dec.decode(chunk, { stream: true });
  })();
  return {
    proc,
    text: () => text,
    seqs: () => [...text.matchAll(/^SEQ=(\d+)$/gm)].map((m) => Number(m[1])),
    async stop() {
      proc.kill("SIGTERM");
      await Promise.race([proc.exited, Bun.sleep(5000)]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
      await done;
    },
  };
}

describe("exportText / parseExport", () => {
  test("text and binary framing, defaults added", () => {
    const bytes = exportText([
      [
        ["MESSAGE", "hello"],
        ["MULTI", "a\nb"],
        ["BIN", new Uint8Array([0, 255, 10])],
        ["EMPTY", ""],
      ],
    ]);
    const s = dec.decode(bytes);
    expect(s).toMatch(/^__REALTIME_TIMESTAMP=\d{16}\n__MONOTONIC_TIMESTAMP=\d+\n_BOOT_ID=[0-9a-f]{32}\nMESSAGE=hello\n/);
    expect(s).toContain("MULTI\n\x03\0\0\0\0\0\0\0a\nb\n");
    expect(s.endsWith("EMPTY=\n\n")).toBe(true);
    const [e] = parseExport(bytes);
    expect(e).toBeDefined();
    expect(fieldOf(e!, "MULTI")).toBe("a\nb");
    expect(e!.find(([n]) => n === "BIN")?.[1]).toEqual(new Uint8Array([0, 255, 10]));
    expect(fieldOf(e!, "_BOOT_ID")).toBe(DEFAULT_BOOT_ID);
  });

  test("given timestamps and boot id are kept, not duplicated", () => {
    const [e] = parseExport(
      exportText([
        [
          ["__REALTIME_TIMESTAMP", "1700000000000001"],
          ["__MONOTONIC_TIMESTAMP", "5"],
          ["_BOOT_ID", "0123456789abcdef0123456789abcdef"],
          ["A", "1"],
        ],
      ]),
    );
    expect(e!.map(([n]) => n)).toEqual(["__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID", "A"]);
  });

  test("sequenceEntries", () => {
    const es = sequenceEntries(7, 3, { messageBytes: 200, extra: (s) => [["EXTRA", `x${s}`]] });
    expect(es.map((e) => fieldOf(e, "SEQ"))).toEqual(["7", "8", "9"]);
    for (const e of es) expect(Math.abs(fieldOf(e, "MESSAGE")!.length - 200)).toBeLessThan(20);
    expect(fieldOf(es[2]!, "EXTRA")).toBe("x9");
    const t = es.map((e) => BigInt(fieldOf(e, "__REALTIME_TIMESTAMP")!));
    expect(t[0]! < t[1]! && t[1]! < t[2]!).toBe(true);
  });
});

describe("writeJournal + journalctlExport", () => {
  test("round trip keeps fields, binary values, repeated fields and order", async () => {
    const d = dir();
    const special: ExportField[] = [
      ["MESSAGE", "line one\nline two"],
      ["BLOB", new Uint8Array([0, 1, 2, 0xff, 0xfe])],
      ["TAG", "a"],
      ["TAG", "b"],
      ["UTF8", "flow 流れ ✓"],
    ];
    await writeJournal(d, [...sequenceEntries(1, 50), [["SEQ", "51"], ...special]]);
    expect(readdirSync(d)).toEqual(["test.journal"]);
    const entries = parseExport(await journalctlExport(d));
    expect(entries.map((e) => Number(fieldOf(e, "SEQ")))).toEqual(range(1, 51));
    const last = entries[50]!;
    expect(fieldOf(last, "MESSAGE")).toBe("line one\nline two");
    expect(last.find(([n]) => n === "BLOB")?.[1]).toEqual(new Uint8Array([0, 1, 2, 0xff, 0xfe]));
    expect(last.filter(([n]) => n === "TAG").map(([, v]) => v)).toEqual(["a", "b"]);
    expect(fieldOf(last, "UTF8")).toBe("flow 流れ ✓");
    expect(fieldOf(entries[0]!, "_HOSTNAME")).toBe("nagare-test-host");
    expect(fieldOf(entries[0]!, "__CURSOR")).toMatch(/^s=[0-9a-f]{32};i=1;b=[0-9a-f]{32};m=[0-9a-f]+;t=[0-9a-f]+;x=[0-9a-f]+$/);
  });

  test("raw bytes input, and empty / missing directories", async () => {
    const d = dir();
    expect((await journalctlExport(d)).length).toBe(0);
    await expect(journalctlExport(`${d}/nope`)).rejects.toThrow(/exited 1/);
    await writeJournal(d, exportText(sequenceEntries(1, 3)));
    expect(seqs(await journalctlExport(d))).toEqual([1, 2, 3]);
  });

  test("appending continues the same journal, in order, with continuing cursors", async () => {
    const d = dir();
    await writeJournal(d, sequenceEntries(1, 100));
    await writeJournal(d, sequenceEntries(101, 50));
    const entries = parseExport(await journalctlExport(d));
    expect(entries.map((e) => Number(fieldOf(e, "SEQ")))).toEqual(range(1, 150));
    const cursors = entries.map((e) => fieldOf(e, "__CURSOR")!);
    const sid = (c: string) => /s=([0-9a-f]+);i=([0-9a-f]+)/.exec(c)!;
    expect(new Set(cursors.map((c) => sid(c)[1])).size).toBe(1);
    expect(cursors.map((c) => parseInt(sid(c)[2]!, 16))).toEqual(range(1, 150));
    // --cursor starts AT the cursor's entry
    const from = await journalctlExport(d, [`--cursor=${cursors[119]}`]);
    expect(seqs(from)[0]).toBe(120);
  });

  test("a running journalctl --follow sees appended entries", async () => {
    const d = dir();
    await writeJournal(d, sequenceEntries(1, 20));
    // --merge: journalctl 252 --follow otherwise implies --boot=0 (only the newest boot in the journal);
    // --no-tail: --follow otherwise starts at the last 10 entries.
    const f = follower(["journalctl", "-D", d, "-o", "export", "--all", "--no-pager", "--follow", "--merge", "--no-tail"]);
    try {
      await waitFor("the first 20 entries", () => f.seqs().length === 20);
      await writeJournal(d, sequenceEntries(21, 30));
      await waitFor("appended entries 21..50", () => f.seqs().length === 50);
      expect(f.seqs()).toEqual(range(1, 50));
    } finally {
      await f.stop();
    }
  });

  test("journalctl --follow --cursor=C prints C first, then appended entries", async () => {
    const d = dir();
    await writeJournal(d, sequenceEntries(1, 10));
    const c = fieldOf(parseExport(await journalctlExport(d))[6]!, "__CURSOR")!;
    const f = follower(["journalctl", "-D", d, "-o", "export", "--all", "--no-pager", "--follow", "--merge", `--cursor=${c}`]);
    try {
      await waitFor("entries 7..10", () => f.seqs().length === 4);
      expect(f.text().startsWith(`__CURSOR=${c}\n`)).toBe(true);
      await writeJournal(d, sequenceEntries(11, 5));
      await waitFor("entries 11..15", () => f.seqs().length === 9);
      expect(f.seqs()).toEqual(range(7, 15));
    } finally {
      await f.stop();
    }
  });

  test("a large journal (NAGARE_LARGE_ENTRIES, default 100,000) comes back complete across rotations", async () => {
    const d = dir();
    const n = Number(process.env.NAGARE_LARGE_ENTRIES ?? 100_000);
    await writeJournal(d, sequenceEntries(1, n));
    // systemd-journal-remote rotates every ~87k entries of this size ("Journal header limits reached")
    expect(readdirSync(d).length).toBeGreaterThan(n >= 90_000 ? 1 : 0);
    const text = dec.decode(await journalctlExport(d));
    let expected = 1;
    for (const m of text.matchAll(/^SEQ=(\d+)$/gm)) {
      if (Number(m[1]) !== expected) break;
      expected++;
    }
    expect(expected - 1).toBe(n);
  }, 120_000);
});

describe("startGatewayd", () => {
  test("serves entries, follows appends, stop() reaps", async () => {
    const d = dir();
    await writeJournal(d, sequenceEntries(1, 10));
    const gw = await startGatewayd(d);
    try {
      const A = { Accept: "application/vnd.fdo.journal" };
      const all = new Uint8Array(await (await fetch(`${gw.url}/entries`, { headers: A })).arrayBuffer());
      const entries = parseExport(all);
      expect(entries.map((e) => Number(fieldOf(e, "SEQ")))).toEqual(range(1, 10));
      const c5 = fieldOf(entries[4]!, "__CURSOR")!;
      const at = async (range: string) =>
        seqs(new Uint8Array(await (await fetch(`${gw.url}/entries`, { headers: { ...A, Range: range } })).arrayBuffer()));
      expect(await at(`entries=${c5}:0:2`)).toEqual([5, 6]); // the cursor's own entry first
      expect(await at(`entries=${c5}:1:2`)).toEqual([6, 7]);
      expect(await at("entries=:-1:2")).toEqual([9, 10]);

      const ac = new AbortController();
      const res = await fetch(`${gw.url}/entries?follow`, { headers: { ...A, Range: `entries=${c5}` }, signal: ac.signal });
      let text = "";
      const reading = (async () => {
        try {
          for await (const chunk of res.body!) text += dec.decode(chunk, { stream: true });
        } catch {
          // aborted
        }
      })();
      const got = () => [...text.matchAll(/^SEQ=(\d+)$/gm)].map((m) => Number(m[1]));
      await waitFor("gatewayd to stream 5..10", () => got().length === 6);
      await writeJournal(d, sequenceEntries(11, 3));
      await waitFor("gatewayd to stream appended 11..13", () => got().length === 9);
      expect(got()).toEqual(range(5, 13));
      ac.abort();
      await reading;
    } finally {
      await gw.stop();
    }
    expect(existsSync(`/proc/${gw.pid}`)).toBe(false);
  });

  test("two at once get different ports", async () => {
    const d = dir();
    const [a, b] = await Promise.all([startGatewayd(d), startGatewayd(d)]);
    try {
      expect(a.url).not.toBe(b.url);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
