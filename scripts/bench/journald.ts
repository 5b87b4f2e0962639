/**
 * Benchmark: a 200,000-entry journal (messages of about 120 bytes, written by systemd-journal-remote) shipped
 * by the built binary to the file sink. Prints entries/s, bytes/s and peak RSS (VmHWM), next to the time
 * `journalctl -D DIR -o export > /dev/null` takes on the same journal.
 *   bash scripts/bench/journald.sh [entries]
 */
import { rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchJournal, runToCheckpoint } from "./common.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const { work, journal, tail } = await benchJournal(ENTRIES);

// journalctl's own export rate: best of three.
let journalctlMs = Infinity;
let exportBytes = 0;
for (let i = 0; i < 3; i++) {
  const started = performance.now();
  const proc = Bun.spawn(["sh", "-c", `journalctl --directory='${journal}' -o export | wc -c`], { stdout: "pipe" });
  exportBytes = Number((await new Response(proc.stdout).text()).trim());
  await proc.exited;
  journalctlMs = Math.min(journalctlMs, performance.now() - started);
}

const data = join(work, "data");
const out = join(work, "out.jsonl");
const config = join(work, "nagare.yaml");
// A short checkpoint interval only makes the end of the run visible sooner; it does not speed up delivery.
writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  out: { type: file, inputs: [journal], path: ${out} }\n`);
const runs: { ms: number; hwm: number }[] = [];
for (let i = 0; i < 3; i++) {
  rmSync(out, { force: true });
  runs.push(await runToCheckpoint(config, data, tail));
  if (i === 0) console.log(`output: ${(statSync(out).size / 1e6).toFixed(1)} MB of JSON lines`);
}
runs.sort((a, b) => a.ms - b.ms);
const best = runs[0]!;
const rate = (ms: number) => Math.round(ENTRIES / (ms / 1000));
console.log(`journalctl -o export: ${ENTRIES} entries in ${journalctlMs.toFixed(0)} ms = ${rate(journalctlMs)} entries/s (${(exportBytes / 1e6 / (journalctlMs / 1000)).toFixed(1)} MB/s)`);
console.log(`nagare journal -> file: ${ENTRIES} entries in ${best.ms.toFixed(0)} ms = ${rate(best.ms)} entries/s (${(exportBytes / 1e6 / (best.ms / 1000)).toFixed(1)} MB/s of export format), acknowledged and checkpointed, process start included`);
console.log(`peak RSS (VmHWM): ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB; runs: ${runs.map((r) => r.ms.toFixed(0)).join(", ")} ms`);
console.log(`nagare / journalctl: ${((100 * journalctlMs) / best.ms).toFixed(0)}% (target: at least 60%)`);
