/**
 * The dead-letter file: a write that fails part-way (a full disk) is cut back and retried, so every letter
 * lands exactly once and whole; a torn tail left by a crash is cut off; the file rotates at
 * dead_letter.max_bytes and keeps dead_letter.max_files files, reporting what it deletes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Batch } from "../src/core/batch.ts";
import type { SendResult, Sink } from "../src/core/component.ts";
import { DeadLetterFile, type DeadLetter } from "../src/core/dead-letter.ts";
import { NagareError } from "../src/core/errors.ts";
import type { LogRecord } from "../src/core/record.ts";
import { SinkDriver } from "../src/core/sink-driver.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { RunningAgent } from "./support/agent.ts";
import { writeAgentConfig } from "./support/config.ts";
import { exportText, sequenceEntries } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function record(seq: number): LogRecord {
  return { timeSec: 0, timeNsec: 0, fields: { SEQ: String(seq), MESSAGE: `${seq} `.padEnd(1000, "x") }, binaryFields: undefined, source: "s", stream: "journal", id: `id-${seq}`, size: 1000, position: seq };
}

function letters(from: number, count: number): DeadLetter[] {
  return Array.from({ length: count }, (_, i) => ({ record: record(from + i), reason: "refused by the test" }));
}

/** Every line of a dead-letter file parsed (a torn line fails the parse), as the SEQ of its record. */
function seqsIn(path: string): number[] {
  const text = readFileSync(path, "utf8");
  expect(text === "" || text.endsWith("\n")).toBe(true);
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => Number(JSON.parse(l).record.SEQ));
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

function sh(...cmd: string[]): void {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${r.exitCode}: ${r.stderr.toString()}`);
}

/** Fills the file system under `dir` and frees `leaveBytes` again; returns the filler file. */
function fillDisk(dir: string, leaveBytes: number): string {
  const filler = join(dir, "filler");
  const fd = openSync(filler, "w");
  const block = Buffer.alloc(4096, 0x2e);
  let size = 0;
  try {
    for (;;) size += writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  }
  ftruncateSync(fd, Math.max(0, size - leaveBytes));
  closeSync(fd);
  return filler;
}

/** A sink that refuses every batch permanently: each of its records becomes a dead letter. */
class RefusingSink implements Sink {
  readonly name = "refuser";
  readonly type = "test";
  readonly maxInFlight = 4;
  async send(): Promise<SendResult> {
    return { status: "failed", error: new NagareError("SINK_REJECTED", "refused by the test") };
  }
  async close(): Promise<void> {}
}

describe("dead letters on a full disk", () => {
  test("a write that fails part-way is cut back and retried: once space returns every letter is there exactly once, every line whole", async () => {
    const mnt = join(tmp.path, "tmpfs");
    mkdirSync(mnt);
    sh("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt);
    try {
      const metrics = new Metrics();
      const deadLetters = new DeadLetterFile(mnt, { metrics });
      const path = deadLetters.pathOf("refuser");
      const failures = () => metrics.read("nagare_dead_letter_write_failures_total", { sink: "refuser" });

      await deadLetters.write("refuser", letters(1, 10));
      const before = readFileSync(path);
      const filler = fillDisk(mnt, 12 * 1024);

      // 40 letters of about 1.2 KiB: the first pages fit, the rest hits the full disk.
      const error = await deadLetters.write("refuser", letters(11, 40)).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(NagareError);
      expect((error as NagareError).retryable).toBe(true);
      expect(readFileSync(path).equals(before)).toBe(true);
      expect(failures()).toBe(1);

      // The same through the sink driver: the batches stay unacknowledged while the writes fail, then land.
      const done: Batch[] = [];
      const driver = new SinkDriver(new RefusingSink(), deadLetters, new Logger("error", { fd: openSync(join(tmp.path, "driver.log"), "w") }), metrics, { retryInitialMs: 1, retryMaxMs: 2 });
      const batches = [range(11, 40), range(51, 40)].map((seqs, i) => new Batch("s", i, seqs.map(record), seqs.length * 1000, ["refuser"], (b) => done.push(b)));
      for (const b of batches) driver.enqueue(b);
      await waitFor("two more failed dead-letter writes", () => failures() >= 3);
      expect(done).toEqual([]);
      unlinkSync(filler);
      await waitFor("both batches dead-lettered and acknowledged", () => done.length === 2, 30_000);
      await driver.stop();

      const seqs = seqsIn(path);
      expect(seqs.slice(0, 10)).toEqual(range(1, 10));
      expect(seqs.slice(10).sort((a, b) => a - b)).toEqual(range(11, 80));
      expect(new Set(seqs).size).toBe(seqs.length);
    } finally {
      sh("umount", mnt);
    }
  });
});

describe("dead-letter file", () => {
  test("a torn last line left by a crash is cut off before the next write, which lands whole", async () => {
    const dir = join(tmp.path, "torn");
    const first = new DeadLetterFile(dir);
    await first.write("s", letters(1, 3));
    const path = first.pathOf("s");
    const whole = readFileSync(path);
    writeFileSync(path, Buffer.concat([whole, Buffer.from('{"at":"2024-01-01T00:00:00Z","sink":"s","source":"s","id":"id-4","rea')]));
    const log = join(tmp.path, "torn.log");
    const fd = openSync(log, "w");
    await new DeadLetterFile(dir, { log: new Logger("info", { fd }) }).write("s", letters(4, 2));
    closeSync(fd);
    expect(seqsIn(path)).toEqual(range(1, 5));
    expect(readFileSync(log, "utf8")).toContain("ended in a torn line");
  });

  test("an agent whose sink refuses everything rotates the file at max_bytes, keeps max_files files and reports what it deleted", async () => {
    const dir = join(tmp.path, "rotation");
    mkdirSync(dir);
    const count = 300;
    const exportFile = join(dir, "saved.export");
    writeFileSync(exportFile, exportText(sequenceEntries(1, count, { messageBytes: 300 })));
    const maxBytes = 32 * 1024;
    const config = writeAgentConfig(dir, {
      batchMaxBytes: "8KiB",
      sources: { journal: { type: "journald", file: exportFile } },
      // A tag that renders empty is a permanent per-record refusal: nothing is ever sent to the server.
      sinks: { refuser: { type: "forward", inputs: ["journal"], tag: "{{field.NO_SUCH_FIELD}}", servers: [{ host: "127.0.0.1", port: 1 }] } },
      top: { dead_letter: { max_bytes: "32KiB", max_files: 3 } },
    });
    const agent = new RunningAgent(config);
    expect(await agent.exited).toBe(0);

    const path = join(dir, "data", "dead-letter", "refuser.jsonl");
    const files = [`${path}.2`, `${path}.1`, path];
    expect(files.map((f) => existsSync(f))).toEqual([true, true, true]);
    expect(existsSync(`${path}.3`)).toBe(false);
    for (const f of files) expect(statSync(f).size).toBeLessThanOrEqual(maxBytes);
    const kept = files.flatMap(seqsIn);
    expect(kept).toEqual(range(count - kept.length + 1, kept.length));

    const deletions = agent.entries().filter((e) => e.level === "error" && e.msg.includes("oldest dead-letter file"));
    expect(deletions.length).toBeGreaterThan(0);
    const deleted = deletions.reduce((n, e) => n + Number(/: (\d+) dead letters/.exec(e.msg)![1]), 0);
    expect(deleted + kept.length).toBe(count);
  });
});
