/**
 * A blocked sink (a file sink on a fifo nobody reads) with 500,000 journal entries waiting: the agent's resident
 * memory stays below the runtime's baseline plus 2 × buffer.max_bytes (VmHWM from /proc/PID/status), and
 * reading resumes when the sink unblocks.
 *
 * max_bytes is 32 MiB: a pipeline at full speed also holds about 10 MiB that does not grow with max_bytes
 * (compiled hot paths, batches being written, allocator pages). With 16 MiB that fixed part left 1–6 MiB of
 * the 2 × max_bytes allowance, and the test measured the collector's timing rather than the buffer's bound.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { memoryOf, tempDir, waitFor } from "./support/util.ts";
import { RunningAgent } from "./support/agent.ts";
import { writeConfig } from "./support/config.ts";
import { CheckpointStore } from "../src/core/checkpoint-store.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const ENTRIES = Number(process.env.NAGARE_BACKPRESSURE_ENTRIES ?? 500_000);
const MAX_BYTES = 32 * 1024 * 1024;

async function run(cmd: string[]): Promise<string> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}`);
  return out;
}

test(`blocked sink with ${ENTRIES} entries waiting: memory bounded, reading resumes`, async () => {
  // The runtime's baseline: the same agent, idle on an empty journal.
  const idleDir = join(tmp.path, "idle");
  mkdirSync(join(idleDir, "journal"), { recursive: true });
  const idle = new RunningAgent(writeConfig({ dir: idleDir, source: { directory: join(idleDir, "journal"), start_at: "head" }, maxBytes: `${MAX_BYTES}` }));
  await waitFor("the idle agent to start reading", () => idle.entries().some((e) => /reads the journal/.test(e.msg)), 20_000);
  const baseline = memoryOf(idle.pid).hwm;
  expect(await idle.stop()).toBe(0);

  const dir = join(tmp.path, "blocked");
  const journal = join(dir, "journal");
  await writeJournal(journal, sequenceEntries(1, ENTRIES));
  const tail = (await run(["journalctl", `--directory=${journal}`, "--quiet", "--lines=0", "--show-cursor"])).replace(/^-- cursor: /, "").trim();
  const fifo = join(dir, "sink.fifo");
  await run(["mkfifo", fifo]);
  const config = writeConfig({ dir, source: { directory: journal, start_at: "head" }, out: fifo, maxBytes: `${MAX_BYTES}` });
  const agent = new RunningAgent(config);
  await waitFor("the buffer to fill and reading to pause", () => agent.entries().some((e) => /buffer is full/.test(e.msg)), 60_000);
  const whileBlocked = memoryOf(agent.pid).hwm;

  const out = join(dir, "out.jsonl");
  const reader = Bun.spawn(["sh", "-c", `cat "${fifo}" > "${out}"`], { stdin: "ignore" });
  const store = new CheckpointStore(join(dir, "data"));
  await waitFor("every entry shipped and checkpointed", () => {
    const saved = store.list()[0]?.checkpoint?.position as { cursor?: string } | undefined;
    return saved?.cursor === tail;
  }, 300_000);
  const peak = memoryOf(agent.pid).hwm;
  expect(await agent.stop()).toBe(0);
  await reader.exited;
  const lines = Number((await run(["wc", "-l", out])).trim().split(/\s+/)[0]);
  const MiB = (n: number) => (n / 1048576).toFixed(1);
  console.log(`backpressure: baseline VmHWM ${MiB(baseline)} MiB, while blocked ${MiB(whileBlocked)} MiB, peak ${MiB(peak)} MiB, bound ${MiB(baseline + 2 * MAX_BYTES)} MiB; ${lines} lines shipped`);
  expect(lines).toBe(ENTRIES);
  expect(whileBlocked).toBeLessThan(baseline + 2 * MAX_BYTES);
  expect(peak).toBeLessThan(baseline + 2 * MAX_BYTES);
}, 600_000);
