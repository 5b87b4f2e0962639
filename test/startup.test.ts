/**
 * What an operator reads when a source starts: the docker source says what it reads, from where and how many
 * files it found, and warns (once, not on every rescan) about an include pattern that matches nothing; a journal
 * without journal files — the embedded default on a host without journald — is named with the fix instead of a
 * silent wait. journalctl's own words about access, as a user without it, are recognised (real journalctl 252).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, metricValue, readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, range, seqsOf, writeAgentConfig, writeConfig } from "./support/config.ts";
import { ContainerWriter } from "./support/docker-writer.ts";
import { judgeProbe } from "../src/sources/journald/access.ts";
import { probeArgs, type JournalProbe } from "../src/sources/journald/readers.ts";
import { agentUser } from "../src/core/user.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
chmodSync(tmp.path, 0o755);
const caseDir = caseDirs(tmp.path);

const infos = (agent: RunningAgent, prefix: string) => agent.entries().filter((e) => e.level === "info" && e.msg.startsWith(prefix)).map((e) => e.msg);
const warnings = (agent: RunningAgent, prefix: string) => agent.entries().filter((e) => e.level === "warn" && e.msg.startsWith(prefix)).map((e) => e.msg);

describe("docker source", () => {
  test("a start-up line with the patterns, format, start_at and the files found; an include matching nothing is one WARN across many rescans", async () => {
    const dir = caseDir();
    const docker = join(dir, "docker");
    const web = new ContainerWriter({ root: docker, name: "web" });
    web.writeMany(range(1, 5).map((n) => `seq=${n}`));
    const pods = join(dir, "pods");
    const include = [`${docker}/*/*-json.log`, `${pods}/*/*/*.log`];
    const out = join(dir, "out.jsonl");
    const config = writeAgentConfig(dir, {
      api: "127.0.0.1:0",
      sources: { containers: { type: "docker", include, rescan_interval: "200ms", poll_interval: "50ms" } },
      sinks: { out: { type: "file", inputs: ["containers"], path: out } },
    });
    let agent = new RunningAgent(config);
    try {
      const api = await apiOf(agent);
      const scans = async () => metricValue(await (await fetch(`${api}/metrics`)).text(), "nagare_container_scans_total", 'source="containers"');
      await waitFor("10 scans", async () => (await scans()) >= 10, 20_000);
      expect(infos(agent, "Source containers reads")).toEqual([
        `Source containers reads container log files matching ${include.join(", ")} (format auto; start_at head: files are read from their start, a saved position wins): 1 file(s) found, 0 with a saved position.`,
      ]);
      const empty = `Source containers: include pattern ${include[1]} matches no file, since ${pods} does not exist (yet). It is searched again every 200 ms and a file is read from its start as soon as it appears. If containers log on this host, check the pattern: Docker's json-file logs are /var/lib/docker/containers/*/*-json.log, kubelet's are /var/log/pods/*/*/*.log.`;
      expect(warnings(agent, "Source containers")).toEqual([empty]);

      const api0 = new ContainerWriter({ root: pods, pod: { namespace: "shop", name: "api-0", container: "api" } });
      api0.writeMany(range(6, 5).map((n) => `seq=${n}`));
      await waitFor("the lines of both containers", () => readJsonLines(out).length >= 10, 20_000);
      expect(await agent.stop()).toBe(0);

      agent = new RunningAgent(config);
      await waitFor("the start-up line", () => infos(agent, "Source containers reads").length > 0, 20_000);
      expect(infos(agent, "Source containers reads")[0]).toEndWith(": 2 file(s) found, 2 with a saved position.");
      expect(await agent.stop()).toBe(0);
      expect(warnings(agent, "Source containers")).toEqual([]);
      expect(readJsonLines(out).map((r) => r.log)).toEqual(range(1, 10).map((n) => `seq=${n}`));
    } finally {
      agent.kill();
    }
  }, 60_000);
});

describe("a journal without journal files", () => {
  test("a directory without journal files: a WARN saying so and what to check; journal files written later are read", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    mkdirSync(journal);
    const out = join(dir, "out.jsonl");
    const agent = new RunningAgent(writeConfig({ dir, source: { directory: journal } }));
    try {
      await waitFor("the reader", () => infos(agent, "Source journal reads the journal").length > 0, 20_000);
      expect(infos(agent, "Source journal reads the journal")).toEqual([`Source journal reads the journal from the head through journalctl from ${journal}.`]);
      expect(warnings(agent, "Source journal")).toEqual([
        `Source journal finds no journal files in ${journal} (journalctl says "No journal files were found"), so it has nothing to read until some appear there. If that is not expected, check \`directory\`: it must be where journald or systemd-journal-remote writes *.journal files.`,
      ]);
      await writeJournal(journal, sequenceEntries(1, 5));
      await waitFor("5 records", () => readJsonLines(out).length >= 5, 20_000);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 5));
    } finally {
      agent.kill();
    }
  }, 60_000);

  test("the embedded default on a host without journal files says so and how to fix it", async () => {
    // journalctl on PATH is a wrapper that reads an empty directory, standing in for a host without journald.
    const dir = caseDir();
    const bin = join(dir, "bin");
    const empty = join(dir, "journal");
    mkdirSync(bin);
    mkdirSync(empty);
    writeFileSync(join(bin, "journalctl"), `#!/bin/sh\nexec ${Bun.which("journalctl")} --directory=${empty} "$@"\n`, { mode: 0o755 });
    const agent = new RunningAgent("", { env: { PATH: `${bin}:${process.env.PATH}`, NAGARE_DATA_DIR: join(dir, "data") } });
    try {
      await waitFor("the reader", () => infos(agent, "Source journal reads the journal").length > 0, 20_000);
      expect(agent.entries().some((e) => e.msg.includes("running with (embedded default)"))).toBe(true);
      expect(warnings(agent, "Source journal")).toEqual([
        `Source journal finds no journal files on this host (journalctl says "No journal files were found"): /var/log/journal and /run/log/journal hold none, as on a host or in a container without systemd-journald, so it has nothing to read. ` +
          "To fix it: run nagare on a host with systemd-journald, or, in a container, mount the host's journal (e.g. /var/log/journal) and set `directory` to it; " +
          "where journald keeps no journal files, set Storage=persistent in /etc/systemd/journald.conf and restart systemd-journald.",
      ]);
      expect(infos(agent, "Source journal reads the journal")).toEqual(["Source journal reads the journal from the head through journalctl."]);
      expect(await agent.stop()).toBe(0);
    } finally {
      agent.kill();
    }
  }, 60_000);
});

describe("journalctl's words about access (systemd 252, as nobody)", () => {
  const AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"];

  /** The probe's own command line, run as nobody. */
  async function probeAsNobody(directory: string): Promise<JournalProbe> {
    const proc = Bun.spawn([...AS_NOBODY, ...probeArgs({ program: "journalctl", directory, matches: [] })], { stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C", SYSTEMD_COLORS: "0" } });
    const [out, err, status] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { cursor: /^-- cursor: (.+)$/m.exec(out)?.[1], status, output: `${err}${out}`, timedOut: false };
  }

  test("a directory, files, part of the files, a missing directory, no files, and all readable", async () => {
    const dir = caseDir();
    const journal = (name: string) => join(dir, name);
    await writeJournal(journal("closed"), sequenceEntries(1, 3));
    chmodSync(journal("closed"), 0o700);
    await writeJournal(journal("files"), sequenceEntries(1, 3));
    chmodSync(join(journal("files"), "test.journal"), 0o600);
    await writeJournal(journal("part"), sequenceEntries(1, 3), { name: "own" });
    await writeJournal(journal("part"), sequenceEntries(4, 3), { name: "system" });
    chmodSync(join(journal("part"), "own.journal"), 0o644);
    chmodSync(join(journal("part"), "system.journal"), 0o600);
    mkdirSync(journal("empty"));
    await writeJournal(journal("open"), sequenceEntries(1, 3));
    chmodSync(join(journal("open"), "test.journal"), 0o644);

    const judge = async (name: string, needCursor = true) => judgeProbe(await probeAsNobody(journal(name)), journal(name), needCursor);
    expect((await judge("closed")).problem?.cause).toBe(`cannot start reading the journal: journalctl may not open ${journal("closed")} (permission denied)`);
    expect((await judge("files")).problem?.cause).toBe(`cannot start reading the journal: journalctl may not read any journal file of ${journal("files")} (insufficient permissions)`);
    const part = await judge("part");
    expect(part.problem).toBeUndefined();
    // Judged here, by the test's user; the agent as nobody says "(nobody)" (health.test.ts).
    expect(part.partial?.cause).toBe(`reads only part of the journal: journalctl shows the user nagare runs as (${agentUser()}) its own entries only, not those of the system and other users`);
    expect((await judge("missing")).problem?.cause).toBe(`cannot start reading the journal: the journal directory ${journal("missing")} does not exist`);
    expect(await judge("empty")).toEqual({ partial: undefined, noFiles: true });
    expect(await judge("open")).toEqual({ partial: undefined, noFiles: false });
    for (const name of ["closed", "files", "part"]) expect((await judge(name)).problem?.fix ?? (await judge(name)).partial?.fix).toContain("systemd-journal group");
  }, 60_000);
});
