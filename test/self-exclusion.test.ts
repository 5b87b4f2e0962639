/**
 * The journald source never reads itself. Under systemd the agent's stdout goes to the journal as entries of its
 * own unit; with a console sink, each printed record came back as a new entry and was printed again, escaped
 * once more, without end. Here systemd's stdout-to-journal path is played by the test: every line the agent
 * prints is appended to the journal it reads as an entry of nagare.service (trusted fields kept by
 * systemd-journal-remote), for several rounds.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fieldOf, journalctlExport, parseExport, sequenceEntries, startGatewayd, writeJournal, type ExportField } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, metricValue, readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, range, seqsOf, writeAgentConfig, writeConfig } from "./support/config.ts";
import { ownUnit, UnitExclusion } from "../src/sources/journald/units.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

/** Entries SEQ from..from+n-1 written by `unit(seq)`; timestamps are given by exportText (now, increasing). */
function entries(from: number, n: number, unit: (seq: number) => ExportField[] = () => []): ExportField[][] {
  return sequenceEntries(from, n).map((entry) => {
    const seq = Number(fieldOf(entry, "SEQ"));
    const own = unit(seq);
    const replaced = new Set(own.map(([name]) => name));
    return [...entry.filter(([name]) => !name.endsWith("_TIMESTAMP") && !replaced.has(name)), ...own];
  });
}

/** What systemd makes of one line a unit printed on stdout. */
function stdoutEntry(unit: string, line: string): ExportField[] {
  return [["_SYSTEMD_UNIT", unit], ["_SYSTEMD_CGROUP", `/system.slice/${unit}`], ["_TRANSPORT", "stdout"], ["SYSLOG_IDENTIFIER", "nagare"], ["_PID", "4242"], ["PRIORITY", "6"], ["MESSAGE", line]];
}

/** Lines of a stream as they arrive. */
function collectLines(stream: ReadableStream<Uint8Array>): string[] {
  const lines: string[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      lines.push(...parts);
    }
  })();
  return lines;
}

async function metric(api: string, name: string): Promise<number> {
  return metricValue(await (await fetch(`${api}/metrics`)).text(), name, 'source="journal"');
}

async function lastCursor(journal: string): Promise<string> {
  return fieldOf(parseExport(await journalctlExport(journal)).at(-1)!, "__CURSOR")!;
}

function savedPosition(dir: string): { cursor?: string; file?: { offset: number } } {
  return JSON.parse(readFileSync(join(dir, "data", "checkpoints", "journal.json"), "utf8")).position;
}

describe("the unit nagare runs in, from /proc/self/cgroup", () => {
  test("names the service or scope systemd put the process in, and nothing else", () => {
    expect(ownUnit("0::/system.slice/shipper.service\n")).toBe("shipper.service");
    expect(ownUnit("0::/system.slice/nagare@eu-west.service\n")).toBe("nagare@eu-west.service");
    expect(ownUnit("0::/system.slice/shipper.service/payload\n")).toBe("shipper.service"); // Delegate=yes sub-cgroup
    expect(ownUnit("0::/system.slice/run-r0b1.scope\n")).toBe("run-r0b1.scope"); // systemd-run --scope
    expect(ownUnit("0::/user.slice/user-1000.slice/user@1000.service/app.slice/nagare.service\n")).toBe("nagare.service");
    // cgroup v1 (legacy and hybrid): systemd's own hierarchy; other controllers are ignored.
    const v1 = "12:memory:/system.slice/other.service\n1:name=systemd:/system.slice/shipper.service\n";
    expect(ownUnit(v1)).toBe("shipper.service");
    expect(ownUnit(`${v1}0::/\n`)).toBe("shipper.service");
    expect(ownUnit("1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n")).toBe("b.service");
    // Not a unit of its own: a container's cgroup namespace, docker's cgroupfs driver, PID 1, a login shell.
    expect(ownUnit("0::/\n")).toBeUndefined();
    expect(ownUnit("9:name=systemd:/\n4:memory:/process_api/6b92\n0::/\n")).toBeUndefined();
    expect(ownUnit("0::/docker/0123456789abcdef\n")).toBeUndefined();
    expect(ownUnit("1:name=systemd:/docker/0123456789abcdef\n")).toBeUndefined();
    expect(ownUnit("0::/init.scope\n")).toBeUndefined();
    expect(ownUnit("0::/user.slice/user-1000.slice/session-4.scope\n")).toBeUndefined();
    expect(ownUnit("0::/system.slice\n")).toBeUndefined();
    expect(ownUnit("")).toBeUndefined();
  });

  test("an exclusion matches names and `*` patterns against _SYSTEMD_UNIT and _SYSTEMD_USER_UNIT", () => {
    const exclusion = UnitExclusion.of({ exclude_own_unit: true, exclude_units: ["noisy-*.service", "a.b+c.service"] }, "shipper.service")!;
    for (const unit of ["nagare.service", "nagare@x.service", "shipper.service", "noisy-1.service", "a.b+c.service"]) expect(exclusion.matches(unit)).toBe(true);
    for (const unit of ["nagare.socket", "xnagare.service", "nagare@x.service.d", "noisy.service", "aab+c.service", "shipper.scope"]) expect(exclusion.matches(unit)).toBe(false);
    expect(exclusion.excludes({ _SYSTEMD_UNIT: "user@1000.service", _SYSTEMD_USER_UNIT: "nagare.service" })).toBe(true);
    expect(exclusion.excludes({ _SYSTEMD_UNIT: "user@1000.service", _SYSTEMD_USER_UNIT: "editor.service" })).toBe(false);
    expect(exclusion.excludes({ _SYSTEMD_UNIT: "init.scope", UNIT: "nagare.service", MESSAGE: "Started nagare.service" })).toBe(false);
    expect(UnitExclusion.of({ exclude_own_unit: false, exclude_units: [] }, "shipper.service")).toBeUndefined();
  });
});

describe("systemd's stdout-to-journal loop, played by the test", () => {
  /**
   * Runs `rounds` rounds: each appends every line printed since the last round as an entry of nagare.service,
   * then five new entries of another unit, and waits until the last of those is printed (the journal is read in
   * order, so everything before it was handled). Returns the lines printed in each round.
   */
  async function loop(dir: string, agent: RunningAgent, rounds: number): Promise<string[][]> {
    const journal = join(dir, "journal");
    const printed = collectLines(agent.stdout);
    const perRound: string[][] = [];
    let seen = 0;
    const printedSeq = (seq: number) => printed.some((line) => (JSON.parse(line) as { SEQ?: string }).SEQ === String(seq));
    await waitFor("the first five entries printed", () => printedSeq(5), 20_000);
    for (let round = 1; round <= rounds; round++) {
      const fresh = printed.slice(seen);
      seen += fresh.length;
      perRound.push(fresh);
      await writeJournal(journal, [...fresh.map((line) => stdoutEntry("nagare.service", line)), ...entries(5 * round + 1, 5)]);
      await waitFor(`round ${round}: entry ${5 * round + 5} printed`, () => printedSeq(5 * round + 5), 20_000);
    }
    perRound.push(printed.slice(seen));
    return perRound;
  }

  function start(dir: string, source: Record<string, unknown>): RunningAgent {
    const config = writeAgentConfig(dir, {
      sources: { journal: { type: "journald", directory: join(dir, "journal"), start_at: "head", ...source } },
      sinks: { stdout: { type: "console", inputs: ["journal"] } },
      api: "127.0.0.1:0",
    });
    return new RunningAgent(config, { stdout: "pipe" });
  }

  test("the agent's own lines are never printed again: no growth over five rounds, and the saved cursor passes them", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, entries(1, 5));
    const agent = start(dir, {});
    const api = await apiOf(agent);
    const rounds = await loop(dir, agent, 5);
    // Every round prints exactly its five new entries, each once and in order, none longer than the first ones.
    expect(rounds.map((lines) => lines.length)).toEqual([5, 5, 5, 5, 5, 5]);
    const printed = rounds.flat().map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(seqsOf(printed)).toEqual(range(1, 30));
    expect(printed.every((r) => r._SYSTEMD_UNIT === "nagare-test.service")).toBe(true);
    const longest = Math.max(...rounds[0]!.map((l) => l.length));
    expect(Math.max(...rounds.flat().map((l) => l.length))).toBeLessThan(longest + 32);
    expect(await metric(api, "nagare_source_excluded_records_total")).toBe(25);
    expect(await metric(api, "nagare_source_read_records_total")).toBe(30);

    // A run of the agent's own entries after everything shipped was saved moves the saved cursor too.
    const last = printed.at(-1)!.__CURSOR;
    await waitFor("the saved cursor at entry 30", () => savedPosition(dir).cursor === last, 20_000);
    await writeJournal(journal, rounds[5]!.map((line) => stdoutEntry("nagare.service", line)));
    await waitFor("the 5 last entries skipped", async () => (await metric(api, "nagare_source_excluded_records_total")) === 30, 20_000);
    const tail = await lastCursor(journal);
    await waitFor("the saved cursor at the last skipped entry", () => savedPosition(dir).cursor === tail, 20_000);
    expect(await agent.stop()).toBe(0);

    // A restart resumes after them: it reaches a new entry without reading any of them again.
    const again = start(dir, {});
    const againApi = await apiOf(again);
    const printedAgain = collectLines(again.stdout);
    await writeJournal(journal, entries(31, 1));
    await waitFor("entry 31 printed", () => printedAgain.length >= 1, 20_000);
    expect(await metric(againApi, "nagare_source_excluded_records_total")).toBe(0);
    expect(await again.stop()).toBe(0);
    expect(seqsOf(printedAgain.map((l) => JSON.parse(l)))).toEqual([31]);
  });

  test("with exclude_own_unit: false the loop feeds on itself (what the exclusion prevents)", async () => {
    const dir = caseDir();
    await writeJournal(join(dir, "journal"), entries(1, 5));
    const agent = start(dir, { exclude_own_unit: false });
    const rounds = await loop(dir, agent, 3);
    expect(await agent.stop()).toBe(0);
    // Each round prints its new entries plus every line of the round before, once more escaped and longer.
    expect(rounds.slice(0, 3).map((lines) => lines.length)).toEqual([5, 10, 15]);
    const longest = rounds.map((lines) => Math.max(...lines.map((l) => l.length)));
    expect(longest[1]!).toBeGreaterThan(longest[0]! * 1.1);
    expect(longest[2]!).toBeGreaterThan(longest[1]! * 1.1);
    const echoes = rounds[2]!.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r._SYSTEMD_UNIT === "nagare.service");
    expect(echoes.length).toBe(10);
  });
});

describe("excluded units with each reader", () => {
  const CGROUP = "12:memory:/system.slice/shipper.service\n1:name=systemd:/system.slice/shipper.service\n0::/system.slice/shipper.service\n";
  /** Who wrote entry `seq`; entries 41-43 (the end of the journal) are all excluded. */
  function writer(seq: number): ExportField[] {
    if (seq > 40) return [["_SYSTEMD_UNIT", "shipper.service"]];
    switch (seq % 8) {
      case 1: return [["_SYSTEMD_UNIT", "shipper.service"]]; // the unit the agent runs in (cgroup file)
      case 2: return [["_SYSTEMD_UNIT", "nagare.service"]];
      case 3: return [["_SYSTEMD_UNIT", "nagare@eu.service"]];
      case 4: return [["_SYSTEMD_UNIT", `noisy-${seq}.service`]]; // exclude_units
      case 5: return [["_SYSTEMD_UNIT", "user@1000.service"], ["_SYSTEMD_USER_UNIT", "nagare.service"]];
      case 6: return [["_SYSTEMD_UNIT", "user@1000.service"], ["_SYSTEMD_USER_UNIT", "editor.service"]];
      case 7: return [["_SYSTEMD_UNIT", "init.scope"], ["UNIT", "shipper.service"], ["MESSAGE", "Started shipper.service."]];
      default: return [];
    }
  }
  const shipped = range(1, 40).filter((s) => s % 8 === 0 || s % 8 === 6 || s % 8 === 7);
  const offShipped = range(1, 43).filter((s) => s % 8 !== 4 || s > 40);

  async function journalDir(dir: string): Promise<string> {
    const journal = join(dir, "journal");
    await writeJournal(journal, entries(1, 43, writer));
    writeFileSync(join(dir, "cgroup"), CGROUP);
    return journal;
  }

  async function runFollowing(dir: string, source: Record<string, unknown>, expectShipped: number[], expectExcluded: number): Promise<RunningAgent> {
    const config = writeConfig({ dir, source: { start_at: "head", exclude_units: ["noisy-*.service"], ...source }, api: "127.0.0.1:0" });
    const agent = new RunningAgent(config, { env: { NAGARE_CGROUP_FILE: join(dir, "cgroup") } });
    const api = await apiOf(agent);
    await waitFor("every entry read or skipped", async () => (await metric(api, "nagare_source_excluded_records_total")) === expectExcluded && (await metric(api, "nagare_source_read_records_total")) === expectShipped.length, 20_000);
    await waitFor("the shipped entries written", () => readJsonLines(join(dir, "out.jsonl")).length === expectShipped.length, 20_000);
    return agent;
  }

  test("journalctl: the cgroup's unit, nagare's units, user units and exclude_units are skipped; the cursor passes the last of them", async () => {
    const dir = caseDir();
    const journal = await journalDir(dir);
    const agent = await runFollowing(dir, { directory: journal }, shipped, 43 - shipped.length);
    const tail = await lastCursor(journal);
    await waitFor("the saved cursor at the last (skipped) entry", () => savedPosition(dir).cursor === tail, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(join(dir, "out.jsonl")))).toEqual(shipped);
    expect(agent.entries().some((e) => e.level === "info" && /skips journal entries written by .*shipper\.service is the unit the agent runs in/.test(e.msg))).toBe(true);
  });

  test("systemd-journal-gatewayd: the same entries are skipped", async () => {
    const dir = caseDir();
    const journal = await journalDir(dir);
    const gateway = await startGatewayd(journal);
    try {
      const agent = await runFollowing(dir, { url: gateway.url }, shipped, 43 - shipped.length);
      const tail = await lastCursor(journal);
      await waitFor("the saved cursor at the last (skipped) entry", () => savedPosition(dir).cursor === tail, 20_000);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(join(dir, "out.jsonl")))).toEqual(shipped);
    } finally {
      await gateway.stop();
    }
  });

  test("a saved export file: the same entries are skipped and the saved offset reaches the end of the file", async () => {
    const dir = caseDir();
    const file = join(dir, "saved.export");
    writeFileSync(file, await journalctlExport(await journalDir(dir)));
    const config = writeConfig({ dir, source: { file, exclude_units: ["noisy-*.service"] } });
    const agent = new RunningAgent(config, { env: { NAGARE_CGROUP_FILE: join(dir, "cgroup") } });
    expect(await agent.exited).toBe(0);
    expect(seqsOf(readJsonLines(join(dir, "out.jsonl")))).toEqual(shipped);
    expect(savedPosition(dir).file?.offset).toBe(readFileSync(file).length);
  });

  test("exclude_own_unit: false ships the agent's own units; exclude_units still applies", async () => {
    const dir = caseDir();
    const journal = await journalDir(dir);
    const agent = await runFollowing(dir, { directory: journal, exclude_own_unit: false }, offShipped, 43 - offShipped.length);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(join(dir, "out.jsonl")))).toEqual(offShipped);
  });
});
