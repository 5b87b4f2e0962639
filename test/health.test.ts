/**
 * /health covers sources and checkpoints, not only sinks: a source that cannot read (a journal the agent's user
 * may not read, a program missing, a gateway unreachable, a container directory it may not list) and a
 * checkpoint that cannot be saved log an ERROR naming the cause and the fix, once, and turn /health 503 after
 * health.max_stall with the component and the reason in the body; when the cause goes away, reading resumes and
 * /health answers 200 again. The agents that must lack permissions run as nobody (setpriv).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, startGatewayd, writeJournal } from "./support/journal.ts";
import { idlePort, tempDir, waitFor } from "./support/util.ts";
import { apiOf, CLI, metricValue, readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, range, seqsOf, writeAgentConfig } from "./support/config.ts";
import { ContainerWriter } from "./support/docker-writer.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
// The agents running as nobody must reach their config and directories under it.
chmodSync(tmp.path, 0o755);
const caseDir = caseDirs(tmp.path);

const AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"];
const NOBODY = 65534;

interface HealthBody {
  status: string;
  sources: { source: string; healthy: boolean; failing_seconds: number; reason?: string }[];
  sinks: { sink: string; healthy: boolean; reason?: string }[];
  checkpoints: { source: string; file: string; healthy: boolean; failing_seconds: number; reason?: string }[];
}

/** A config with the given sources, a file sink `out`, max_stall 1 s and debug logging (retries are logged there). */
function healthConfig(dir: string, sources: Record<string, unknown>, options: { nobody?: boolean } = {}): { config: string; out: string } {
  const data = join(dir, "data");
  const outDir = join(dir, "out");
  for (const d of [data, outDir]) {
    mkdirSync(d, { recursive: true });
    if (options.nobody) chownSync(d, NOBODY, NOBODY);
  }
  const out = join(outDir, "out.jsonl");
  const config = writeAgentConfig(dir, {
    api: "127.0.0.1:0",
    sources,
    sinks: { out: { type: "file", inputs: Object.keys(sources), path: out } },
    top: { health: { max_stall: "1s" }, log: { level: "debug" } },
  });
  return { config, out };
}

/** Waits until /health answers `status`; returns its body. */
async function healthOf(api: string, status: 200 | 503, timeoutMs = 20_000): Promise<HealthBody> {
  const body = await waitFor(`/health ${status}`, async () => {
    const r = await fetch(`${api}/health`);
    return r.status === status ? ((await r.json()) as HealthBody) : undefined;
  }, timeoutMs);
  return body!;
}

function errorsOf(agent: RunningAgent, prefix: string): string[] {
  return agent.entries().filter((e) => e.level === "error" && e.msg.startsWith(prefix)).map((e) => e.msg);
}

/** Waits for `n` retries after the first failure (logged at debug level), so that repeats would have shown. */
async function retries(agent: RunningAgent, n: number): Promise<void> {
  await waitFor(`${n} retries`, () => agent.entries().filter((e) => /^Source \w+ tries again in \d+ ms\.$/.test(e.msg)).length >= n, 20_000);
}

const grant = (what: string) =>
  `let the user nagare runs as (nobody) read ${what} and the journal files in it; for journald's own directories, add the user nagare runs as (nobody) to the systemd-journal group (usermod -aG systemd-journal nobody), then restart nagare, since a running process does not gain new groups`;
const KEEPS_TRYING = "It keeps trying; /health answers 503 once this has lasted health.max_stall.";

describe("a source that cannot read", () => {
  test("a journal directory only root may open: one ERROR with the fix, 503 naming the source; made readable, the records flow and /health is 200", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 20));
    chmodSync(journal, 0o700);
    const { config, out } = healthConfig(dir, { journal: { type: "journald", directory: journal, start_at: "head", restart_backoff_max: "300ms" } }, { nobody: true });
    const agent = new RunningAgent(config, { command: [...AS_NOBODY, ...CLI] });
    try {
      const api = await apiOf(agent);
      const body = await healthOf(api, 503);
      expect(body.status).toBe("unhealthy");
      const cause = `cannot start reading the journal: journalctl may not open ${journal} (permission denied)`;
      expect(body.sources).toEqual([{ source: "journal", healthy: false, failing_seconds: expect.any(Number), reason: `${cause}; to fix it: ${grant(journal)}` }]);
      expect(body.sources[0]!.failing_seconds).toBeGreaterThanOrEqual(1);
      expect(body.sinks.map((s) => s.healthy)).toEqual([true]);
      expect(body.checkpoints.map((c) => c.healthy)).toEqual([true]);

      await retries(agent, 3);
      expect(errorsOf(agent, "Source journal")).toEqual([`Source journal ${cause}. To fix it: ${grant(journal)}. ${KEEPS_TRYING}`]);
      expect(errorsOf(agent, "The environment is not ready: sources.journal.directory")).toHaveLength(1);
      expect(agent.entries().filter((e) => /lost its journal reader/.test(e.msg))).toEqual([]);

      for (const file of readdirSync(journal)) chmodSync(join(journal, file), 0o644);
      chmodSync(journal, 0o755);
      await waitFor("20 records", () => readJsonLines(out).length >= 20, 20_000);
      const healed = await healthOf(api, 200);
      expect(healed.sources).toEqual([{ source: "journal", healthy: true, failing_seconds: 0 }]);
      expect(agent.entries().some((e) => e.level === "info" && /^Source journal reads again after [\d.]+ s \(the problem was: it cannot start reading the journal: journalctl may not open /.test(e.msg))).toBe(true);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 20));
    } finally {
      agent.kill();
    }
  }, 60_000);

  test("a journal the agent's user reads only in part (journalctl's hint): its own entries are read, an ERROR names the systemd-journal group, 503", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 5), { name: "own" });
    await writeJournal(journal, sequenceEntries(6, 5), { name: "system" });
    chmodSync(join(journal, "own.journal"), 0o644);
    chmodSync(join(journal, "system.journal"), 0o600);
    const { config, out } = healthConfig(dir, { journal: { type: "journald", directory: journal, start_at: "head" } }, { nobody: true });
    const agent = new RunningAgent(config, { command: [...AS_NOBODY, ...CLI] });
    try {
      const api = await apiOf(agent);
      await waitFor("the 5 readable records", () => readJsonLines(out).length >= 5, 20_000);
      const body = await healthOf(api, 503);
      const cause = "reads only part of the journal: journalctl shows the user nagare runs as (nobody) its own entries only, not those of the system and other users";
      expect(body.sources).toEqual([{ source: "journal", healthy: false, failing_seconds: expect.any(Number), reason: `${cause}; to fix it: ${grant(journal)}` }]);
      expect(errorsOf(agent, "Source journal")).toEqual([`Source journal ${cause}. To fix it: ${grant(journal)}. ${KEEPS_TRYING}`]);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 5));
    } finally {
      agent.kill();
    }
  }, 60_000);

  test("journalctl missing: the start-up check and the source say so with the fix, 503; once it is installed, the records flow and /health is 200", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 10));
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const program = join(bin, "journalctl");
    const { config, out } = healthConfig(dir, { journal: { type: "journald", journalctl: program, directory: journal, start_at: "head", restart_backoff_max: "300ms" } });
    const agent = new RunningAgent(config);
    try {
      const api = await apiOf(agent);
      const body = await healthOf(api, 503);
      const cause = `cannot start reading the journal: the program ${program} does not exist or is not executable`;
      const fix = "install systemd (it provides journalctl), or set `journalctl` to the program's path";
      expect(body.sources).toEqual([{ source: "journal", healthy: false, failing_seconds: expect.any(Number), reason: `${cause}; to fix it: ${fix}` }]);
      await retries(agent, 3);
      expect(errorsOf(agent, "Source journal")).toEqual([`Source journal ${cause}. To fix it: ${fix}. ${KEEPS_TRYING}`]);
      expect(errorsOf(agent, "The environment is not ready: sources.journal.journalctl")).toHaveLength(1);

      symlinkSync(Bun.which("journalctl")!, program);
      await waitFor("10 records", () => readJsonLines(out).length >= 10, 20_000);
      await healthOf(api, 200);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 10));
    } finally {
      agent.kill();
    }
  }, 60_000);

  test("a gateway that does not answer: an ERROR saying what to check, 503; once gatewayd runs there, the records flow and /health is 200", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 10));
    // Nothing answers there until gatewayd is started on it (an ephemeral port freed here could be given to the
    // agent's own API meanwhile, which would answer 404).
    const port = idlePort();
    const url = `http://127.0.0.1:${port}`;
    const { config, out } = healthConfig(dir, { journal: { type: "journald", url, start_at: "head", restart_backoff_max: "300ms", connect_timeout: "2s" } });
    const agent = new RunningAgent(config);
    let gateway: Awaited<ReturnType<typeof startGatewayd>> | undefined;
    try {
      const api = await apiOf(agent);
      const body = await healthOf(api, 503);
      const fix = `check that systemd-journal-gatewayd runs at ${url} and that this host may reach it`;
      expect(body.sources[0]!.reason).toStartWith(`cannot start reading the journal: cannot reach the journal gateway at ${url}/entries?follow: `);
      expect(body.sources[0]!.reason).toEndWith(`; to fix it: ${fix}`);
      await retries(agent, 3);
      const errors = errorsOf(agent, "Source journal");
      expect(errors).toHaveLength(1);
      expect(errors[0]).toEndWith(`To fix it: ${fix}. ${KEEPS_TRYING}`);

      gateway = await startGatewayd(journal, 10_000, port);
      await waitFor("10 records", () => readJsonLines(out).length >= 10, 20_000);
      await healthOf(api, 200);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 10));
    } finally {
      agent.kill();
      await gateway?.stop();
    }
  }, 60_000);

  test("a container directory the agent may not list: an ERROR naming it, 503; made readable, its lines flow and /health is 200", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const web = new ContainerWriter({ root, name: "web" });
    web.writeMany(range(1, 10).map((n) => `seq=${n}`));
    // The include directory may be listed; one container's directory only by root.
    chmodSync(root, 0o755);
    chmodSync(web.path, 0o644);
    chmodSync(web.dir, 0o700);
    const include = `${root}/*/*-json.log`;
    const { config, out } = healthConfig(dir, { containers: { type: "docker", include: [include], rescan_interval: "200ms", poll_interval: "50ms" } }, { nobody: true });
    const agent = new RunningAgent(config, { command: [...AS_NOBODY, ...CLI] });
    try {
      const api = await apiOf(agent);
      const body = await healthOf(api, 503);
      const cause = `cannot read the directory ${web.dir} (EACCES), so the log files under include pattern ${include} are not all found`;
      const fix = "let the user nagare runs as (nobody) read it; the installed unit gives nagare CAP_DAC_READ_SEARCH for this";
      expect(body.sources).toEqual([{ source: "containers", healthy: false, failing_seconds: expect.any(Number), reason: `${cause}; to fix it: ${fix}` }]);
      // Searched every 200 ms, named once.
      await waitFor("10 scans", async () => metricValue(await (await fetch(`${api}/metrics`)).text(), "nagare_container_scans_total", 'source="containers"') >= 10, 20_000);
      expect(errorsOf(agent, "Source containers")).toEqual([`Source containers ${cause}. To fix it: ${fix}. ${KEEPS_TRYING}`]);

      chmodSync(web.dir, 0o755);
      await waitFor("10 lines", () => readJsonLines(out).length >= 10, 20_000);
      await healthOf(api, 200);
      expect(await agent.stop()).toBe(0);
      expect(readJsonLines(out).map((r) => r.log)).toEqual(range(1, 10).map((n) => `seq=${n}`));
    } finally {
      agent.kill();
    }
  }, 60_000);
});

describe("checkpoints that cannot be saved", () => {
  test("an unwritable checkpoint directory: an ERROR naming the file and the cause, 503 naming the checkpoint; writable again: saved and 200", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 10));
    for (const file of readdirSync(journal)) chmodSync(join(journal, file), 0o644);
    const { config, out } = healthConfig(dir, { journal: { type: "journald", directory: journal, start_at: "head" } }, { nobody: true });
    const checkpoints = join(dir, "data", "checkpoints");
    const file = join(checkpoints, "journal.json");
    const savedSeq = () => {
      try {
        // The cursor's i= is the entry's sequence number, in hex.
        return parseInt(/;i=([0-9a-f]+);/.exec(JSON.parse(readFileSync(file, "utf8")).position.cursor)?.[1] ?? "0", 16);
      } catch {
        return 0;
      }
    };
    const agent = new RunningAgent(config, { command: [...AS_NOBODY, ...CLI] });
    try {
      const api = await apiOf(agent);
      await waitFor("the 10th entry's position saved", () => savedSeq() === 0xa, 20_000);
      chmodSync(checkpoints, 0o500);
      await writeJournal(journal, sequenceEntries(11, 10));
      await waitFor("20 records", () => readJsonLines(out).length >= 20, 20_000);
      const body = await healthOf(api, 503);
      expect(body.checkpoints).toEqual([{ source: "journal", file, healthy: false, failing_seconds: expect.any(Number), reason: expect.stringContaining(`cannot write the checkpoint ${file}: EACCES: permission denied, open '${file}.tmp-`) }]);
      expect(body.sources.map((s) => s.healthy)).toEqual([true]);
      expect(body.sinks.map((s) => s.healthy)).toEqual([true]);
      const errors = errorsOf(agent, "Cannot save the position of source journal");
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0]).toContain(`It keeps trying; /health answers 503 once this has lasted health.max_stall: cannot write the checkpoint ${file}: EACCES`);
      expect(savedSeq()).toBe(0xa);

      chmodSync(checkpoints, 0o700);
      await waitFor("the 20th entry's position saved", () => savedSeq() === 0x14, 20_000);
      const healed = await healthOf(api, 200);
      expect(healed.checkpoints).toEqual([{ source: "journal", file, healthy: true, failing_seconds: 0 }]);
      expect(agent.entries().some((e) => e.level === "info" && e.msg.startsWith(`The position of source journal is saved again, to ${file}, after `))).toBe(true);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 20));
    } finally {
      agent.kill();
    }
  }, 60_000);
});
