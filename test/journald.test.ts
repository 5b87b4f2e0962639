/**
 * The journald source end to end against real journal files (written by systemd-journal-remote) read through
 * journalctl and through systemd-journal-gatewayd, shipped by the agent process to the file sink.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { journalctlExport, parseExport, sequenceEntries, startGatewayd, writeJournal, type ExportField } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, seqsOf, writeConfig } from "./support/config.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

/** Entries that exercise the format: binary values, a value over 64 KiB, repeated fields, text with tabs. */
function tricky(): ExportField[][] {
  const big = "x".repeat(70 * 1024);
  return sequenceEntries(1, 50, {
    extra: (seq) => {
      const fields: ExportField[] = [];
      if (seq % 5 === 0) fields.push(["BLOB", new Uint8Array([0, 1, 0xff, 0xfe, 10, 10, seq & 0xff])]);
      if (seq % 7 === 0) fields.push(["MULTILINE", `line one\nline two ${seq}`]);
      if (seq % 3 === 0) fields.push(["TAG", "a"], ["TAG", `b${seq}`], ["TAG", new Uint8Array([0x80, seq & 0xff])]);
      if (seq === 10) fields.push(["BIG", big]);
      if (seq === 11) fields.push(["TABS", "a\tb\tc"]);
      return fields;
    },
  });
}

/** name → hex of every value, from the oracle (journalctl's own export) or from the agent's JSON. */
function oracleShape(entry: ExportField[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, value] of entry) (out[name] ??= []).push(Buffer.from(value).toString("hex"));
  return out;
}

function shippedShape(record: Record<string, unknown>): Record<string, string[]> {
  const binary = new Set((record._nagare_binary as string[] | undefined) ?? []);
  const out: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(record)) {
    if (name.startsWith("_nagare_")) continue;
    const values = Array.isArray(value) ? value : [value];
    out[name] = values.map((v) => Buffer.from(String(v), binary.has(name) ? "base64" : "utf8").toString("hex"));
  }
  return out;
}

async function expectSameAsJournal(dir: string, shipped: Record<string, unknown>[]) {
  const oracle = parseExport(await journalctlExport(join(dir, "journal")));
  expect(shipped.length).toBe(oracle.length);
  for (let i = 0; i < oracle.length; i++) expect(shippedShape(shipped[i]!)).toEqual(oracleShape(oracle[i]!));
}

describe("journald source with journalctl", () => {
  let dir: string;
  beforeAll(async () => {
    dir = caseDir();
    await writeJournal(join(dir, "journal"), tricky());
  });

  test("ships every field of every entry: binary, over 64 KiB, repeated, multi-line", async () => {
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" }, idField: true });
    const agent = new RunningAgent(config);
    const out = join(dir, "out.jsonl");
    await waitFor("50 records shipped", () => readJsonLines(out).length >= 50, 20_000);
    expect(await agent.stop()).toBe(0);
    const shipped = readJsonLines(out);
    await expectSameAsJournal(dir, shipped);
    const ids = shipped.map((r) => r._nagare_id);
    expect(new Set(ids).size).toBe(50);
    const blob = shipped.find((r) => r.SEQ === "5")!;
    expect(blob._nagare_binary).toEqual(["BLOB"]);
    expect(Buffer.from(blob.BLOB as string, "base64")).toEqual(Buffer.from([0, 1, 0xff, 0xfe, 10, 10, 5]));
    expect((shipped.find((r) => r.SEQ === "10")!.BIG as string).length).toBe(70 * 1024);
  });

  test("a restart resumes after the last shipped entry: appended entries arrive once, in order", async () => {
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" }, idField: true }, "again.json");
    const out = join(dir, "out.jsonl");
    const before = readJsonLines(out);
    const idsBefore = before.map((r) => r._nagare_id);
    const agent = new RunningAgent(config);
    await writeJournal(join(dir, "journal"), sequenceEntries(51, 200));
    await waitFor("all 250 records shipped", () => readJsonLines(out).length >= 250, 20_000);
    expect(await agent.stop()).toBe(0);
    const shipped = readJsonLines(out);
    expect(shipped.length).toBe(250);
    expect(shipped.slice(0, 50).map((r) => r._nagare_id)).toEqual(idsBefore);
    expect(seqsOf(shipped)).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
  });
});

describe("journald source with systemd-journal-gatewayd", () => {
  test("ships the same records as journalctl, follows appended entries, and resumes exactly", async () => {
    const dir = caseDir();
    await writeJournal(join(dir, "journal"), tricky());
    const gateway = await startGatewayd(join(dir, "journal"));
    try {
      const config = writeConfig({ dir, source: { url: gateway.url, start_at: "head" } });
      const out = join(dir, "out.jsonl");
      let agent = new RunningAgent(config);
      await waitFor("50 records shipped", () => readJsonLines(out).length >= 50, 20_000);
      await writeJournal(join(dir, "journal"), sequenceEntries(51, 100));
      await waitFor("150 records shipped", () => readJsonLines(out).length >= 150, 20_000);
      expect(await agent.stop()).toBe(0);
      await writeJournal(join(dir, "journal"), sequenceEntries(151, 50));
      agent = new RunningAgent(config);
      await waitFor("200 records shipped", () => readJsonLines(out).length >= 200, 20_000);
      expect(await agent.stop()).toBe(0);
      const shipped = readJsonLines(out);
      expect(seqsOf(shipped)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      await expectSameAsJournal(dir, shipped);
    } finally {
      await gateway.stop();
    }
  });
});

describe("start positions and gaps", () => {
  test("start_at: tail ships only entries written after the start", async () => {
    const dir = caseDir();
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 100));
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "tail" } });
    const agent = new RunningAgent(config);
    await waitFor("the reader to start at the tail", () => agent.entries().some((e) => /reads the journal from cursor/.test(e.msg)), 10_000);
    const out = join(dir, "out.jsonl");
    await writeJournal(join(dir, "journal"), sequenceEntries(101, 20));
    await waitFor("the 20 new records", () => readJsonLines(out).length >= 20, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(out))).toEqual(Array.from({ length: 20 }, (_, i) => 101 + i));
  });

  test("a saved cursor that is no longer in the journal is reported as a gap and reading goes on", async () => {
    const dir = caseDir();
    // Journal A holds entries 1..10; the checkpoint points at its entry 5. Journal B (the "vacuumed" one)
    // only holds entries 8..20 under a new seqnum id.
    const a = join(dir, "a");
    await writeJournal(a, sequenceEntries(1, 10));
    const saved = parseExport(await journalctlExport(a))[4]!.find(([k]) => k === "__CURSOR")![1] as string;
    await writeJournal(join(dir, "journal"), sequenceEntries(8, 13));
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" } });
    mkdirSync(join(dir, "data", "checkpoints"), { recursive: true });
    writeFileSync(join(dir, "data", "checkpoints", "journal.json"), JSON.stringify({ version: 1, source: "journal", type: "journald", saved_at: new Date().toISOString(), position: { cursor: saved } }));
    const agent = new RunningAgent(config);
    const out = join(dir, "out.jsonl");
    await waitFor("entries after the gap", () => readJsonLines(out).length >= 13, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(out))).toEqual(Array.from({ length: 13 }, (_, i) => 8 + i));
    expect(agent.entries().some((e) => e.level === "warn" && /no longer in the journal/.test(e.msg))).toBe(true);
  });
});

describe("saved export streams", () => {
  test("a malformed entry is skipped with a WARN naming its cursor; its neighbours are shipped", async () => {
    const dir = caseDir();
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 30));
    const text = Buffer.from(await journalctlExport(join(dir, "journal"))).toString("latin1");
    const entries = text.split("\n\n").filter((e) => e !== "");
    const victim = entries[14]!;
    const victimCursor = /__CURSOR=(.*)/.exec(victim)![1];
    entries[14] = victim.replace(/\nSEQ=15\n/, "\nSEQ=15\nnot a field\n");
    const file = join(dir, "saved.export");
    writeFileSync(file, Buffer.from(`${entries.join("\n\n")}\n\n`, "latin1"));
    const config = writeConfig({ dir, source: { file } });
    const agent = new RunningAgent(config);
    expect(await agent.exited).toBe(0);
    const seqs = seqsOf(readJsonLines(join(dir, "out.jsonl")));
    expect(seqs).toEqual(Array.from({ length: 30 }, (_, i) => i + 1).filter((s) => s !== 15));
    const warn = agent.entries().find((e) => e.level === "warn" && /malformed/.test(e.msg));
    expect(warn?.msg).toContain(victimCursor);
  });

  test("a file source resumes at its saved offset and exits once everything is acknowledged", async () => {
    const dir = caseDir();
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 40));
    const file = join(dir, "saved.export");
    writeFileSync(file, await journalctlExport(join(dir, "journal")));
    const config = writeConfig({ dir, source: { file } });
    expect(await new RunningAgent(config).exited).toBe(0);
    expect(await new RunningAgent(config).exited).toBe(0);
    const checkpoint = JSON.parse(readFileSync(join(dir, "data", "checkpoints", "journal.json"), "utf8"));
    expect(checkpoint.position.file.offset).toBe(readFileSync(file).length);
    expect(seqsOf(readJsonLines(join(dir, "out.jsonl")))).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });
});
