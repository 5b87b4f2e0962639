/**
 * kill -9 at random moments: a journal of 100,000 entries with unique SEQ values is shipped to the file sink
 * while the agent is killed with SIGKILL three times and restarted. At the end every entry is present at
 * least once, and the duplicates are no more than one buffer's worth per kill.
 */
import { afterAll, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal, journalctlExport } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { readJsonLines, RunningAgent } from "./support/agent.ts";
import { coverage, seqsOf, writeConfig } from "./support/config.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const ENTRIES = 100_000;
const MAX_BYTES = 2 * 1024 * 1024;
const KILLS = 3;

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

test(`${ENTRIES} entries, SIGKILL ${KILLS} times: nothing lost, duplicates within one buffer per kill`, async () => {
  const dir = tmp.path;
  const journal = join(dir, "journal");
  await writeJournal(journal, sequenceEntries(1, ENTRIES));
  const exportBytes = (await journalctlExport(journal)).length;
  const out = join(dir, "out.jsonl");
  const config = writeConfig({ dir, source: { directory: journal, start_at: "head" }, maxBytes: `${MAX_BYTES}`, checkpointInterval: "1s" });
  // Kill points spread over the run, as output sizes: random, increasing, all well before the end.
  const totalOut = exportBytes * 1.1;
  const killAt = Array.from({ length: KILLS }, (_, i) => totalOut * ((i + 0.2 + Math.random() * 0.6) / (KILLS + 1)));
  for (const [i, threshold] of killAt.entries()) {
    const agent = new RunningAgent(config);
    await waitFor(`output past kill point ${i + 1}`, () => sizeOf(out) >= threshold, 60_000);
    agent.kill("SIGKILL");
    await agent.exited;
  }
  const agent = new RunningAgent(config);
  await waitFor("every entry shipped", () => coverage(seqsOf(readJsonLines(out)), 1, ENTRIES).missing.length === 0, 120_000);
  expect(await agent.stop()).toBe(0);

  const shipped = readJsonLines(out);
  const { missing, duplicates } = coverage(seqsOf(shipped), 1, ENTRIES);
  const entryBytes = exportBytes / ENTRIES;
  const perBuffer = Math.ceil((MAX_BYTES + 256 * 1024) / entryBytes);
  console.log(`crash test: ${ENTRIES} entries, ${KILLS} kills, ${shipped.length} lines, ${missing.length} missing, ${duplicates} duplicates (allowed ${KILLS} x ${perBuffer} = one buffer of ${MAX_BYTES} bytes per kill)`);
  expect(missing).toEqual([]);
  expect(duplicates).toBeLessThanOrEqual(KILLS * perBuffer);
  // Order within the stream: after each restart the sequence continues from a point at or before where it was.
  const seqs = seqsOf(shipped);
  let restarts = 0;
  for (let i = 1; i < seqs.length; i++) if (seqs[i]! !== seqs[i - 1]! + 1) restarts++;
  expect(restarts).toBeLessThanOrEqual(KILLS);
}, 300_000);
