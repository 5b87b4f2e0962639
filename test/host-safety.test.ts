/**
 * The data directory on a real host: a checkpoint nagare cannot use never turns into a skip, a newer one stops
 * the agent until the operator decides, and one data_dir runs one agent.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { readJsonLines, runCli, RunningAgent } from "./support/agent.ts";
import { caseDirs, range, seqsOf, writeConfig } from "./support/config.ts";
import { writeDockerConfig } from "./support/docker-config.ts";
import { jsonFileEntry } from "./support/docker-writer.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

function checkpointPath(dir: string): string {
  return join(dir, "data", "checkpoints", "journal.json");
}

function plantCheckpoint(dir: string, text: string): void {
  mkdirSync(join(dir, "data", "checkpoints"), { recursive: true });
  writeFileSync(checkpointPath(dir), text);
}

describe("checkpoints nagare cannot use", () => {
  test("a checkpoint of a newer format version: run exits 78 naming the file and the way out, and keeps the file", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 10));
    const config = writeConfig({ dir, source: { directory: journal, start_at: "head" } });
    const future = '{"version":2,"source":"journal","layout":"something this version does not know"}\n';
    plantCheckpoint(dir, future);
    const result = await runCli(["run", "-c", config]);
    expect(result.code).toBe(78);
    expect(result.stderr).toContain(checkpointPath(dir));
    expect(result.stderr).toContain("newer nagare");
    expect(result.stderr).toContain("nagare checkpoints --reset journal");
    expect(readFileSync(checkpointPath(dir), "utf8")).toBe(future);
    expect(existsSync(join(dir, "out.jsonl"))).toBe(false);

    const listed = await runCli(["checkpoints", "-c", config]);
    expect(listed.stdout).toContain("newer nagare (format version 2");
    const reset = await runCli(["checkpoints", "-c", config, "--reset", "journal"]);
    expect(reset.code).toBe(0);
    expect(reset.stdout).toContain("journal: checkpoint removed");
    expect(existsSync(checkpointPath(dir))).toBe(false);

    const agent = new RunningAgent(config);
    await waitFor("10 records", () => readJsonLines(join(dir, "out.jsonl")).length >= 10, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(join(dir, "out.jsonl")))).toEqual(range(1, 10));
  });

  for (const [what, text] of [
    ["empty", ""],
    ["truncated", '{"version":1,"source":"journal","type":"journald","saved_at":"2026-12-01T00:00:00.000Z","position":{"cur'],
  ] as const) {
    test(`a checkpoint that is ${what}, with start_at: tail: every entry is shipped, with an ERROR, and the file kept aside`, async () => {
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 2000));
      plantCheckpoint(dir, text);
      const agent = new RunningAgent(writeConfig({ dir, source: { directory: journal, start_at: "tail" } }));
      const out = join(dir, "out.jsonl");
      await waitFor("2000 records", () => readJsonLines(out).length >= 2000, 30_000);
      await writeJournal(journal, sequenceEntries(2001, 10));
      await waitFor("2010 records", () => readJsonLines(out).length >= 2010, 30_000);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 2010));
      const error = agent.entries().find((e) => e.level === "error" && /checkpoint of source journal is unusable/.test(e.msg));
      expect(error?.msg).toContain("reads again from the oldest position");
      const aside = readdirSync(join(dir, "data", "checkpoints")).filter((n) => n.startsWith("journal.json.corrupt-"));
      expect(aside.length).toBe(1);
      expect(readFileSync(join(dir, "data", "checkpoints", aside[0]!), "utf8")).toBe(text);
    });
  }
});

describe("a lost container checkpoint", () => {
  test("an empty checkpoint with start_at: tail: every line of every container file is shipped", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const id = "c".repeat(64);
    mkdirSync(join(root, id), { recursive: true });
    const time = new Date().toISOString();
    const lines = range(1, 500).map((n) => jsonFileEntry(new TextEncoder().encode(`seq=${n}\n`), "stdout", time));
    writeFileSync(join(root, id, `${id}-json.log`), Buffer.concat(lines));
    mkdirSync(join(dir, "data", "checkpoints"), { recursive: true });
    writeFileSync(join(dir, "data", "checkpoints", "containers.json"), "");
    const agent = new RunningAgent(writeDockerConfig({ dir, root, source: { start_at: "tail" } }));
    const out = join(dir, "out.jsonl");
    await waitFor("500 lines", () => readJsonLines(out).length >= 500, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(readJsonLines(out).map((r) => String(r.log))).toEqual(range(1, 500).map((n) => `seq=${n}`));
  });
});

describe("one agent per data_dir", () => {
  test("a second agent on the same data_dir exits at once naming the first one's pid; the first keeps shipping", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 100));
    const out = join(dir, "out.jsonl");
    const first = new RunningAgent(writeConfig({ dir, source: { directory: journal, start_at: "head" } }));
    try {
      await waitFor("100 records", () => readJsonLines(out).length >= 100, 20_000);
      const secondConfig = writeConfig({ dir, source: { directory: journal, start_at: "head" }, out: join(dir, "second.jsonl") }, "second.json");
      const started = performance.now();
      const second = await runCli(["run", "-c", secondConfig]);
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(second.code).not.toBe(0);
      expect(second.stderr).toContain(`in use by another nagare (pid ${first.pid})`);
      expect(readJsonLines(join(dir, "second.jsonl"))).toEqual([]);

      await waitFor("the first agent's checkpoint", () => existsSync(checkpointPath(dir)), 10_000);
      const reset = await runCli(["checkpoints", "-c", secondConfig, "--reset", "journal"]);
      expect(reset.code).not.toBe(0);
      expect(reset.stderr).toContain("stop that agent first");
      expect(existsSync(checkpointPath(dir))).toBe(true);

      await writeJournal(journal, sequenceEntries(101, 50));
      await waitFor("150 records", () => readJsonLines(out).length >= 150, 20_000);
      expect(await first.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 150));
    } finally {
      first.kill();
    }
  });

  test("the lock dies with the agent: after SIGKILL a new agent starts on the data_dir and resumes", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 100));
    const out = join(dir, "out.jsonl");
    const config = writeConfig({ dir, source: { directory: journal, start_at: "head" } });
    const first = new RunningAgent(config);
    await waitFor("100 records", () => readJsonLines(out).length >= 100, 20_000);
    first.kill("SIGKILL");
    await first.exited;
    await writeJournal(journal, sequenceEntries(101, 50));
    const second = new RunningAgent(config);
    await waitFor("entry 150", () => readJsonLines(out).some((r) => Number(r.SEQ) === 150), 20_000);
    expect(await second.stop()).toBe(0);
    const seqs = seqsOf(readJsonLines(out));
    expect(new Set(seqs)).toEqual(new Set(range(1, 150)));
  });
});
