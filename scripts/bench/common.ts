/** Shared by the end-to-end benchmarks: the cached benchmark journal, and timing a run to its final checkpoint. */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "../../test/support/journal.ts";
import { memoryOf } from "../../test/support/util.ts";

export const ROOT = join(import.meta.dir, "..", "..");
const BINARY = join(ROOT, "dist", "nagare");

/**
 * The benchmark journals, built once under .bench/ by systemd-journal-remote, with their tail cursor:
 *  - "small" (the default): entries of about 8 fields and a 120-byte MESSAGE, where the per-entry cost dominates;
 *  - "wide": the usual ~20 trusted fields of a syslog entry and a 120-byte MESSAGE.
 */
export type JournalProfile = "small" | "wide";

const SMALL_FIELDS = new Set(["__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "_PID", "_HOSTNAME", "_SYSTEMD_UNIT", "_TRANSPORT", "SEQ", "MESSAGE"]);

export async function benchJournal(entries: number, profile: JournalProfile = "small"): Promise<{ work: string; journal: string; tail: string }> {
  const work = join(ROOT, ".bench", `journald-${entries}-${profile}`);
  const journal = join(work, "journal");
  if (!existsSync(join(work, "ready"))) {
    rmSync(work, { recursive: true, force: true });
    for (let from = 1; from <= entries; from += 50_000) {
      const batch = sequenceEntries(from, Math.min(50_000, entries - from + 1), { messageBytes: 120 });
      await writeJournal(journal, profile === "small" ? batch.map((e) => e.filter(([k]) => SMALL_FIELDS.has(k))) : batch);
    }
    writeFileSync(join(work, "ready"), "");
  }
  const proc = Bun.spawn(["journalctl", `--directory=${journal}`, "--quiet", "--lines=0", "--show-cursor"], { stdout: "pipe" });
  const tail = (await new Response(proc.stdout).text()).replace(/^-- cursor: /, "").trim();
  await proc.exited;
  return { work, journal, tail };
}

/** journalctl's own export rate on a journal (best of three runs, output counted by wc): ms and bytes. */
export async function journalctlRate(journal: string): Promise<{ ms: number; bytes: number }> {
  let ms = Infinity;
  let bytes = 0;
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const proc = Bun.spawn(["sh", "-c", `journalctl --directory='${journal}' -o export | wc -c`], { stdout: "pipe" });
    bytes = Number((await new Response(proc.stdout).text()).trim());
    await proc.exited;
    ms = Math.min(ms, performance.now() - started);
  }
  return { ms, bytes };
}

/** runUntilCheckpoint for the journald benches: until the cursor of source `journal` is `tail`. */
export function runToCheckpoint(config: string, dataDir: string, tail: string): Promise<{ ms: number; hwm: number }> {
  return runUntilCheckpoint(config, dataDir, "journal", (position) => (position as { cursor?: string }).cursor === tail, `${dataDir}.log`);
}

/**
 * Runs the binary with `config` until `reached(position)` holds for the saved checkpoint of source `source`
 * (read from `<dataDir>/checkpoints/<source>.json` every 10 ms); returns the time from spawn (process start
 * included) and the peak RSS. The agent is then stopped with SIGTERM. The agent's stderr goes to `logFile`, and
 * an agent that exits before the end fails the run with the tail of that log.
 */
export async function runUntilCheckpoint(
  config: string,
  dataDir: string,
  source: string,
  reached: (position: unknown) => boolean,
  logFile: string,
): Promise<{ ms: number; hwm: number }> {
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(logFile, { force: true });
  const started = performance.now();
  const agent = Bun.spawn([BINARY, "run", "-c", config], { stdout: "ignore", stderr: Bun.file(logFile) });
  const checkpoint = join(dataDir, "checkpoints", `${source}.json`);
  let hwm = 0;
  for (;;) {
    if (agent.exitCode !== null || agent.signalCode !== null) {
      const log = existsSync(logFile) ? readFileSync(logFile, "utf8").trim().split("\n").slice(-10).join("\n") : "";
      throw new Error(`the agent exited early (${agent.exitCode ?? agent.signalCode}); the end of its log:\n${log}`);
    }
    if (performance.now() - started > 600_000) {
      agent.kill("SIGKILL");
      throw new Error("the agent did not finish within 10 minutes");
    }
    try {
      hwm = Math.max(hwm, memoryOf(agent.pid).hwm);
    } catch {
      // exiting (no VmHWM in a zombie's status): reported above once the process is reaped
    }
    if (existsSync(checkpoint) && reached(JSON.parse(readFileSync(checkpoint, "utf8")).position)) break;
    await Bun.sleep(10);
  }
  const ms = performance.now() - started;
  agent.kill("SIGTERM");
  await agent.exited;
  return { ms, hwm };
}
