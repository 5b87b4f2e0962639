/**
 * Benchmark: a 200,000-entry journal (messages of about 120 bytes, written by systemd-journal-remote) shipped
 * by the built binary to the file sink. Prints entries/s, bytes/s and peak RSS (VmHWM), next to the time
 * `journalctl -D DIR -o export > /dev/null` takes on the same journal.
 *   bash scripts/bench/journald.sh [entries]
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryOf, sequenceEntries, writeJournal } from "../../test/support/journal.ts";

const ROOT = join(import.meta.dir, "..", "..");
const ENTRIES = Number(process.argv[2] ?? 200_000);
const WORK = join(ROOT, ".bench", `journald-${ENTRIES}`);
const JOURNAL = join(WORK, "journal");
const BINARY = join(ROOT, "dist", "nagare");

async function output(cmd: string[]): Promise<string> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "inherit" });
  const [text, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}`);
  return text;
}

if (!existsSync(join(WORK, "ready"))) {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  for (let from = 1; from <= ENTRIES; from += 50_000) await writeJournal(JOURNAL, sequenceEntries(from, Math.min(50_000, ENTRIES - from + 1), { messageBytes: 120 }));
  writeFileSync(join(WORK, "ready"), "");
}
const tail = (await output(["journalctl", `--directory=${JOURNAL}`, "--quiet", "--lines=0", "--show-cursor"])).replace(/^-- cursor: /, "").trim();

// journalctl's own export rate: best of three.
let journalctlMs = Infinity;
let exportBytes = 0;
for (let i = 0; i < 3; i++) {
  const started = performance.now();
  const proc = Bun.spawn(["sh", "-c", `journalctl --directory='${JOURNAL}' -o export | wc -c`], { stdout: "pipe" });
  exportBytes = Number((await new Response(proc.stdout).text()).trim());
  await proc.exited;
  journalctlMs = Math.min(journalctlMs, performance.now() - started);
}

const runs: { ms: number; hwm: number }[] = [];
for (let i = 0; i < 3; i++) {
  const data = join(WORK, "data");
  const out = join(WORK, "out.jsonl");
  rmSync(data, { recursive: true, force: true });
  rmSync(out, { force: true });
  const config = join(WORK, "nagare.yaml");
  writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\nsources:\n  journal: { type: journald, directory: ${JOURNAL}, start_at: head }\nsinks:\n  out: { type: file, inputs: [journal], path: ${out} }\n`);
  const started = performance.now();
  const agent = Bun.spawn([BINARY, "run", "-c", config], { stdout: "ignore", stderr: "ignore" });
  const checkpoint = join(data, "checkpoints", "journal.json");
  let hwm = 0;
  for (;;) {
    hwm = memoryOf(agent.pid).hwm;
    if (existsSync(checkpoint) && JSON.parse(readFileSync(checkpoint, "utf8")).position.cursor === tail) break;
    if (performance.now() - started > 600_000) throw new Error("the agent did not finish within 10 minutes");
    await Bun.sleep(10);
  }
  const ms = performance.now() - started;
  agent.kill("SIGTERM");
  await agent.exited;
  runs.push({ ms, hwm });
  if (i === 0) console.log(`output: ${(statSync(out).size / 1e6).toFixed(1)} MB of JSON lines`);
}
runs.sort((a, b) => a.ms - b.ms);
const best = runs[0]!;
const rate = (ms: number) => Math.round(ENTRIES / (ms / 1000));
console.log(`journalctl -o export: ${ENTRIES} entries in ${journalctlMs.toFixed(0)} ms = ${rate(journalctlMs)} entries/s (${(exportBytes / 1e6 / (journalctlMs / 1000)).toFixed(1)} MB/s)`);
console.log(`nagare journal -> file: ${ENTRIES} entries in ${best.ms.toFixed(0)} ms = ${rate(best.ms)} entries/s (${(exportBytes / 1e6 / (best.ms / 1000)).toFixed(1)} MB/s of export format), acknowledged and checkpointed, process start included`);
console.log(`peak RSS (VmHWM): ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB; runs: ${runs.map((r) => r.ms.toFixed(0)).join(", ")} ms`);
console.log(`nagare / journalctl: ${((100 * journalctlMs) / best.ms).toFixed(0)}% (target: at least 60%)`);
