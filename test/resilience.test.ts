/**
 * The agent outlives its reader and its config: journalctl killed or reporting "Bad message" is restarted
 * from the last entry read (no loss, no duplicate); SIGHUP applies a valid config and refuses an invalid one
 * while shipping goes on.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, startGatewayd, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, metricValue, readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, range, seqsOf, writeConfig } from "./support/config.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

async function childrenOf(pid: number): Promise<number[]> {
  const proc = Bun.spawn(["pgrep", "-P", String(pid)], { stdout: "pipe" });
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  return text.split("\n").filter(Boolean).map(Number);
}


describe("journal reader failures", () => {
  test("journalctl killed mid-stream is restarted after the last entry read", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 1000));
    const agent = new RunningAgent(writeConfig({ dir, source: { directory: journal, start_at: "head", restart_backoff_max: "1s" } }));
    const out = join(dir, "out.jsonl");
    await waitFor("1000 records", () => readJsonLines(out).length >= 1000, 20_000);
    const [journalctl] = await childrenOf(agent.pid);
    expect(journalctl).toBeGreaterThan(0);
    process.kill(journalctl!, "SIGKILL");
    await waitFor("the restart", () => agent.entries().some((e) => e.level === "warn" && /lost its journal reader/.test(e.msg)), 10_000);
    await writeJournal(journal, sequenceEntries(1001, 500));
    await waitFor("1500 records", () => readJsonLines(out).length >= 1500, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(out))).toEqual(range(1, 1500));
  });

  test('journalctl printing "Bad message" is restarted; nothing is lost or repeated', async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 300));
    // A journalctl that complains once while following, the way a corrupted journal file makes it complain, then works.
    const wrapper = join(dir, "journalctl-bad");
    writeFileSync(wrapper, `#!/bin/sh\ncase "$*" in *--follow*) if [ ! -e "${dir}/complained" ]; then\n  touch "${dir}/complained"\n  echo "Failed to iterate through journal: Bad message" >&2\nfi;; esac\nexec journalctl "$@"\n`);
    chmodSync(wrapper, 0o755);
    const agent = new RunningAgent(writeConfig({ dir, source: { directory: journal, start_at: "head", journalctl: wrapper, restart_backoff_max: "1s" } }));
    const out = join(dir, "out.jsonl");
    await waitFor("the restart", () => agent.entries().some((e) => /lost its journal reader \(journalctl reported "Failed to iterate through journal: Bad message"\)/.test(e.msg)), 10_000);
    await writeJournal(journal, sequenceEntries(301, 100));
    await waitFor("400 records", () => readJsonLines(out).length >= 400, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(out))).toEqual(range(1, 400));
  });
});

describe("SIGHUP reload", () => {
  test("a valid config is applied without loss; an invalid one is refused and shipping goes on", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 100));
    const source = { directory: journal, start_at: "head" };
    const config = writeConfig({ dir, source });
    const agent = new RunningAgent(config);
    const out = join(dir, "out.jsonl");
    const second = join(dir, "second.jsonl");
    await waitFor("100 records", () => readJsonLines(out).length >= 100, 20_000);

    writeConfig({ dir, source, extraSinks: { second: { type: "file", inputs: ["journal"], path: second } } });
    agent.kill("SIGHUP");
    await waitFor("the reload", () => agent.entries().some((e) => /^Reloaded/.test(e.msg)), 20_000);
    await writeJournal(journal, sequenceEntries(101, 50));
    await waitFor("150 records in the first sink", () => readJsonLines(out).length >= 150, 20_000);
    await waitFor("the new records in the second sink", () => readJsonLines(second).length >= 50, 20_000);

    writeConfig({ dir, source: { directory: journal, strat_at: "head" } });
    agent.kill("SIGHUP");
    await waitFor("the refusal", () => agent.entries().some((e) => e.level === "error" && /is invalid and was not applied/.test(e.msg)), 20_000);
    await writeJournal(journal, sequenceEntries(151, 50));
    await waitFor("200 records in the first sink", () => readJsonLines(out).length >= 200, 20_000);
    expect(await agent.stop()).toBe(0);

    expect(seqsOf(readJsonLines(out))).toEqual(range(1, 200));
    // The added sink starts at the source's saved position: it gets what was read after the reload.
    expect(seqsOf(readJsonLines(second))).toEqual(range(101, 100));
    const refusal = agent.entries().find((e) => /is invalid/.test(e.msg));
    expect(refusal?.msg).toContain("sources.journal.strat_at: unknown key");
  });
});

describe("gateway failures", () => {
  test("a gateway that goes away is reconnected with backoff and reading resumes exactly", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 50));
    let gateway = await startGatewayd(journal);
    const port = Number(new URL(gateway.url).port);
    const agent = new RunningAgent(writeConfig({ dir, source: { url: gateway.url, start_at: "head", restart_backoff_max: "500ms", connect_timeout: "2s" } }));
    const out = join(dir, "out.jsonl");
    try {
      await waitFor("50 records", () => readJsonLines(out).length >= 50, 20_000);
      await gateway.stop();
      await waitFor("the lost connection", () => agent.entries().some((e) => /lost its journal reader/.test(e.msg)), 10_000);
      await writeJournal(journal, sequenceEntries(51, 50));
      await waitFor("a failed reconnect", () => agent.entries().some((e) => e.level === "error" && /cannot start reading the journal/.test(e.msg)), 10_000);
      gateway = await startGatewayd(journal, 10_000, port);
      await waitFor("100 records", () => readJsonLines(out).length >= 100, 20_000);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 100));
    } finally {
      agent.kill();
      await gateway.stop();
    }
  });
});

describe("shutdown with a blocked sink", () => {
  test("SIGTERM exits within shutdown_timeout; the unacknowledged records are shipped after the restart", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 100));
    const fifo = join(dir, "sink.fifo");
    expect(await Bun.spawn(["mkfifo", fifo]).exited).toBe(0);
    const config = writeConfig({ dir, source: { directory: journal, start_at: "head" }, out: fifo, shutdownTimeout: "1s", api: "127.0.0.1:0" });
    let agent = new RunningAgent(config);
    const api = await apiOf(agent);
    // The warning below is about records held unacknowledged, so wait until all 100 are read and none acknowledged.
    await waitFor("100 records read", async () => metricValue(await (await fetch(`${api}/metrics`)).text(), "nagare_source_read_records_total", 'source="journal"') === 100, 10_000);
    const stopping = performance.now();
    expect(await agent.stop(15_000)).toBe(0);
    expect(performance.now() - stopping).toBeLessThan(8_000);
    expect(agent.entries().some((e) => e.level === "warn" && /not yet acknowledged/.test(e.msg))).toBe(true);

    const out = join(dir, "out.jsonl");
    const reader = Bun.spawn(["sh", "-c", `cat "${fifo}" > "${out}"`]);
    agent = new RunningAgent(config);
    await waitFor("100 records", () => readJsonLines(out).length >= 100, 20_000);
    expect(await agent.stop()).toBe(0);
    await reader.exited;
    expect(seqsOf(readJsonLines(out))).toEqual(range(1, 100));
  });
});
