/** Shared by the end-to-end benchmarks: the cached benchmark journal, and timing a run to its final checkpoint. */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryOf, sequenceEntries, writeJournal } from "../../test/support/journal.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "nagare");

/**
 * The benchmark journal of `entries` entries (120-byte messages and the usual ~20 trusted fields; with
 * `small`, a 100-byte message and 3 fields), built once under .bench/, and its tail cursor.
 */
export async function benchJournal(entries: number, small = false): Promise<{ work: string; journal: string; tail: string }> {
  const work = join(ROOT, ".bench", `journald-${entries}${small ? "-small" : ""}`);
  const journal = join(work, "journal");
  if (!existsSync(join(work, "ready"))) {
    rmSync(work, { recursive: true, force: true });
    for (let from = 1; from <= entries; from += 50_000) {
      const batch = sequenceEntries(from, Math.min(50_000, entries - from + 1), { messageBytes: small ? 100 : 120 });
      await writeJournal(journal, small ? batch.map((e) => e.filter(([k]) => ["__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID", "SEQ", "MESSAGE", "PRIORITY"].includes(k))) : batch);
    }
    writeFileSync(join(work, "ready"), "");
  }
  const proc = Bun.spawn(["journalctl", `--directory=${journal}`, "--quiet", "--lines=0", "--show-cursor"], { stdout: "pipe" });
  const tail = (await new Response(proc.stdout).text()).replace(/^-- cursor: /, "").trim();
  await proc.exited;
  return { work, journal, tail };
}

/**
 * Runs the binary with `config` until the checkpoint of source `journal` reaches `tail`; returns the time from
 * spawn (process start included) and the peak RSS. The agent is then stopped with SIGTERM.
 */
export async function runToCheckpoint(config: string, dataDir: string, tail: string): Promise<{ ms: number; hwm: number }> {
  rmSync(dataDir, { recursive: true, force: true });
  const started = performance.now();
  const agent = Bun.spawn([BINARY, "run", "-c", config], { stdout: "ignore", stderr: "ignore" });
  const checkpoint = join(dataDir, "checkpoints", "journal.json");
  let hwm = 0;
  for (;;) {
    hwm = memoryOf(agent.pid).hwm;
    if (existsSync(checkpoint) && JSON.parse(readFileSync(checkpoint, "utf8")).position.cursor === tail) break;
    if (performance.now() - started > 600_000) {
      agent.kill("SIGKILL");
      throw new Error("the agent did not finish within 10 minutes");
    }
    await Bun.sleep(10);
  }
  const ms = performance.now() - started;
  agent.kill("SIGTERM");
  await agent.exited;
  return { ms, hwm };
}
