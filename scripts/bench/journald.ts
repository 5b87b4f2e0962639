/**
 * Benchmark: 200,000-entry journals (written by systemd-journal-remote) shipped by the built binary to the file
 * sink, next to `journalctl -D DIR -o export > /dev/null` on the same journal in the same run. Prints entries/s,
 * bytes/s, peak RSS (VmHWM) and the ratio to journalctl for the small-entry journal (target ≥ 0.6) and the
 * 20-field one.
 *   bash scripts/bench/journald.sh [entries] [small|wide]
 */
import { rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchJournal, journalctlRate, runToCheckpoint, type JournalProfile } from "./common.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const PROFILES: JournalProfile[] = process.argv[3] === undefined ? ["small", "wide"] : [process.argv[3] as JournalProfile];
const rate = (ms: number) => Math.round(ENTRIES / (ms / 1000));

for (const profile of PROFILES) {
  const { work, journal, tail } = await benchJournal(ENTRIES, profile);
  const journalctl = await journalctlRate(journal);
  const data = join(work, "data");
  const out = join(work, "out.jsonl");
  const config = join(work, "nagare.yaml");
  // A short checkpoint interval only makes the end of the run visible sooner; it does not speed up delivery.
  writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  out: { type: file, inputs: [journal], path: ${out} }\n`);
  const runs: { ms: number; hwm: number }[] = [];
  for (let i = 0; i < 3; i++) {
    rmSync(out, { force: true });
    runs.push(await runToCheckpoint(config, data, tail));
  }
  runs.sort((a, b) => a.ms - b.ms);
  const best = runs[0]!;
  console.log(`[${profile} entries] output ${(statSync(out).size / 1e6).toFixed(1)} MB of JSON lines`);
  console.log(`  journalctl -o export: ${ENTRIES} entries in ${journalctl.ms.toFixed(0)} ms = ${rate(journalctl.ms)} entries/s (${(journalctl.bytes / 1e6 / (journalctl.ms / 1000)).toFixed(1)} MB/s)`);
  console.log(`  nagare journal -> file: ${rate(best.ms)} entries/s (${(journalctl.bytes / 1e6 / (best.ms / 1000)).toFixed(1)} MB/s of export format), acknowledged and checkpointed, process start included; runs ${runs.map((r) => r.ms.toFixed(0)).join(", ")} ms`);
  console.log(`  peak RSS (VmHWM): ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB`);
  console.log(`  nagare / journalctl: ${(journalctl.ms / best.ms).toFixed(2)}${profile === "small" ? " (target: at least 0.6)" : ""}`);
}
