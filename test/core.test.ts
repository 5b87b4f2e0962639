import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckTracker } from "../src/core/ack-tracker.ts";
import { Batch } from "../src/core/batch.ts";
import { Batcher } from "../src/core/batcher.ts";
import { MemoryBuffer } from "../src/core/buffer.ts";
import { CheckpointStore } from "../src/core/checkpoint-store.ts";
import { DataDirLock } from "../src/core/data-dir-lock.ts";
import { NagareError } from "../src/core/errors.ts";
import { encodeFieldsJson } from "../src/core/json.ts";
import { Backoff } from "../src/core/backoff.ts";
import type { SendResult, Sink } from "../src/core/component.ts";
import { DeadLetterFile } from "../src/core/dead-letter.ts";
import type { Delivery } from "../src/core/delivery.ts";
import { SinkDriver } from "../src/core/sink-driver.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { tempDir, waitFor } from "./support/util.ts";
import type { LogRecord } from "../src/core/record.ts";
import { journaldPosition } from "../src/sources/journald/position.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function record(stream: string, position: unknown, size = 10): LogRecord {
  return { timeSec: 0, timeNsec: 0, fields: { MESSAGE: String(position) }, binaryFields: undefined, source: "s", stream, id: String(position), size, position };
}

let seq = 0;
function batch(records: LogRecord[], sinks: string[], onDone: (b: Batch) => void = () => {}): Batch {
  return new Batch("s", seq++, records, records.reduce((n, r) => n + r.size, 0), sinks, onDone);
}

describe("batch acknowledgement", () => {
  test("is done only when every sink settled it, and a second settle by one sink throws", () => {
    const done: Batch[] = [];
    const b = batch([record("a", 1)], ["kafka", "file"], (x) => done.push(x));
    b.ack.settle("kafka", "delivered");
    expect(done).toHaveLength(0);
    expect(() => b.ack.settle("kafka", "delivered")).toThrow(/settled twice/);
    b.ack.settle("file", "rejected");
    expect(done).toEqual([b]);
    expect(b.ack.rejections).toEqual(["file"]);
  });
});

describe("ack tracker", () => {
  test("the watermark moves only over a contiguous done prefix, per stream", () => {
    const tracker = new AckTracker();
    const b1 = batch([record("a", 1), record("b", 10), record("a", 2)], ["x"]);
    const b2 = batch([record("a", 3)], ["x"]);
    const b3 = batch([record("b", 11), record("a", 4)], ["x"]);
    for (const b of [b1, b2, b3]) tracker.register(b);
    tracker.complete(b2);
    expect(tracker.watermarks().size).toBe(0);
    expect(tracker.takeChanged()).toBe(false);
    tracker.complete(b3);
    expect(tracker.watermarks().size).toBe(0);
    tracker.complete(b1);
    expect(tracker.takeChanged()).toBe(true);
    expect(Object.fromEntries(tracker.watermarks())).toEqual({ a: 4, b: 11 });
    expect(tracker.outstandingBatches).toBe(0);
  });

  test("an ended stream is forgotten once its last batch is done; other streams are kept", () => {
    const tracker = new AckTracker();
    const b1 = batch([record("gone", 1), record("live", 1)], ["x"]);
    const b2 = batch([record("gone", 2)], ["x"]);
    tracker.register(b1);
    tracker.register(b2);
    tracker.end("gone");
    expect(tracker.streamCount).toBe(2);
    tracker.complete(b1);
    expect(tracker.streamCount).toBe(2);
    tracker.complete(b2);
    expect(tracker.streamCount).toBe(1);
    expect(Object.fromEntries(tracker.watermarks())).toEqual({ live: 1 });
    tracker.end("live");
    expect(tracker.streamCount).toBe(0);
  });

  test("a held batch of one stream does not hold back another stream", () => {
    const tracker = new AckTracker();
    const b1 = batch([record("a", 1)], ["x"]);
    const b2 = batch([record("b", 1)], ["x"]);
    tracker.register(b1);
    tracker.register(b2);
    tracker.complete(b2);
    expect(Object.fromEntries(tracker.watermarks())).toEqual({ b: 1 });
  });
});

describe("sink driver", () => {
  const DOWN: SendResult = { status: "failed", error: new NagareError("SINK_UNAVAILABLE", "the destination is down") };
  const driverDir = tempDir();
  afterAll(() => driverDir.cleanup());
  /** A sink whose attempts wait until the test answers them, in any order. */
  class ScriptedSink implements Sink {
    readonly name = "scripted";
    readonly type = "test";
    readonly attempts: { delivery: Delivery; answer: (r: SendResult) => void }[] = [];
    constructor(readonly maxInFlight: number) {}
    send(delivery: Delivery): Promise<SendResult> {
      return new Promise((answer) => this.attempts.push({ delivery, answer }));
    }
    async close(): Promise<void> {}
    /** Orders of the attempts not answered yet. */
    open(): number[] {
      return this.attempts.filter((a) => !(a as { answered?: boolean }).answered).map((a) => a.delivery.order);
    }
    reply(order: number, result: SendResult): void {
      const attempt = this.attempts.find((a) => a.delivery.order === order && !(a as { answered?: boolean }).answered)!;
      (attempt as { answered?: boolean }).answered = true;
      attempt.answer(result);
    }
  }

  function driverWith(sink: ScriptedSink) {
    const done: Batch[] = [];
    const driver = new SinkDriver(sink, new DeadLetterFile(driverDir.path), new Logger("error"), new Metrics(), { retryInitialMs: 1, retryMaxMs: 2 });
    const batches = Array.from({ length: 6 }, () => batch([record("a", seq)], [sink.name], (b) => done.push(b)));
    return { driver, done, batches };
  }

  test("keeps maxInFlight batches in flight, settles them in any order, and starts the next as each settles", async () => {
    const sink = new ScriptedSink(3);
    const { driver, done, batches } = driverWith(sink);
    for (const b of batches) driver.enqueue(b);
    expect(sink.open()).toEqual([0, 1, 2]);
    sink.reply(2, { status: "delivered" });
    await waitFor("batch 3 started", () => sink.open().includes(3));
    expect(sink.open()).toEqual([0, 1, 3]);
    for (const order of [1, 0, 3, 4, 5]) {
      await waitFor(`batch ${order} in flight`, () => sink.open().includes(order));
      sink.reply(order, { status: "delivered" });
    }
    await waitFor("every batch settled", () => done.length === 6);
    expect(done.map((b) => batches.indexOf(b))).toEqual([2, 1, 0, 3, 4, 5]);
    await driver.stop();
  });

  test("after a failure: nothing new starts; the failed batches go again alone, oldest first, with the same delivery", async () => {
    const sink = new ScriptedSink(3);
    const { driver, done } = driverWith(sink);
    const batches = Array.from({ length: 5 }, (_, i) => batch([record("a", 100 + i)], [sink.name], (b) => done.push(b)));
    for (const b of batches) driver.enqueue(b);
    sink.reply(1, DOWN);
    sink.reply(0, DOWN);
    // The window stays closed while batch 2 is in flight, and nothing new starts after it settles.
    expect(sink.open()).toEqual([2]);
    sink.reply(2, { status: "delivered" });
    await waitFor("batch 0 sent again", () => sink.open().length === 1);
    expect(sink.open()).toEqual([0]);
    const again = sink.attempts.filter((a) => a.delivery.order === 0);
    expect(again[1]!.delivery).toBe(again[0]!.delivery);
    expect(again[1]!.delivery.attempts).toBe(2);
    sink.reply(0, { status: "delivered" });
    await waitFor("batch 1 sent again, alone", () => sink.open().includes(1));
    expect(sink.open()).toEqual([1]);
    sink.reply(1, { status: "delivered" });
    await waitFor("the window open again", () => sink.open().length === 2);
    expect(sink.open()).toEqual([3, 4]);
    sink.reply(3, { status: "delivered" });
    sink.reply(4, { status: "delivered" });
    await waitFor("every batch settled", () => done.length === 5);
    expect(done.map((b) => batches.indexOf(b))).toEqual([2, 0, 1, 3, 4]);
    await driver.stop();
  });

  test("once the destination takes a retried batch again, the other failed ones go at once, not after the outage's delay", async () => {
    const sink = new ScriptedSink(2);
    const done: Batch[] = [];
    // Every retry waits 3–6 s (equal jitter of 6 s), so a batch sent again within 2 s did not wait for a delay.
    const driver = new SinkDriver(sink, new DeadLetterFile(driverDir.path), new Logger("error"), new Metrics(), { retryInitialMs: 6000, retryMaxMs: 6000 });
    const batches = Array.from({ length: 2 }, (_, i) => batch([record("a", 200 + i)], [sink.name], (b) => done.push(b)));
    for (const b of batches) driver.enqueue(b);
    sink.reply(0, DOWN);
    sink.reply(1, DOWN);
    await waitFor("batch 0 sent again after the delay", () => sink.open().includes(0), 10_000);
    sink.reply(0, { status: "delivered" });
    const back = performance.now();
    await waitFor("batch 1 sent again", () => sink.open().includes(1), 10_000);
    expect(performance.now() - back).toBeLessThan(2000);
    sink.reply(1, { status: "delivered" });
    await waitFor("both settled", () => done.length === 2);
    await driver.stop();
  });

  test("a failure that is not retryable dead-letters its batch once, without a retry; a retryable one is sent again", async () => {
    const sink = new ScriptedSink(1);
    const metrics = new Metrics();
    const deadLetters = new DeadLetterFile(join(driverDir.path, "refusals"));
    const driver = new SinkDriver(sink, deadLetters, new Logger("error"), metrics, { retryInitialMs: 1, retryMaxMs: 2 });
    const done: Batch[] = [];
    const refused = batch([record("a", 300), record("a", 301)], [sink.name], (b) => done.push(b));
    const failing = batch([record("a", 302)], [sink.name], (b) => done.push(b));
    driver.enqueue(refused);
    driver.enqueue(failing);
    sink.reply(0, { status: "failed", error: new NagareError("SINK_REJECTED", "the destination refuses these records for good") });
    await waitFor("the refused batch settled", () => done.includes(refused));
    await waitFor("the next batch sent", () => sink.open().includes(1));
    sink.reply(1, DOWN);
    await waitFor("the next batch sent again", () => sink.open().includes(1));
    sink.reply(1, { status: "delivered" });
    await waitFor("the next batch settled", () => done.includes(failing));
    await driver.stop();

    const letters = readFileSync(deadLetters.pathOf(sink.name), "utf8").trim().split("\n").map((line) => JSON.parse(line));
    expect(letters.map((l) => [l.id, l.reason])).toEqual([
      ["300", "the destination refuses these records for good"],
      ["301", "the destination refuses these records for good"],
    ]);
    expect(sink.attempts.map((a) => a.delivery.order)).toEqual([0, 1, 1]);
    const read = (name: string, labels: Record<string, string> = {}) => metrics.read(name, { sink: sink.name, ...labels });
    expect(read("nagare_sink_dead_lettered_records_total")).toBe(2);
    expect(read("nagare_sink_retries_total")).toBe(1);
    expect(read("nagare_sink_errors_total", { code: "SINK_REJECTED" })).toBe(1);
    expect(read("nagare_sink_errors_total", { code: "SINK_UNAVAILABLE" })).toBe(1);
    expect(read("nagare_sink_acknowledged_records_total")).toBe(1);
  });

  test("a sink that throws (a bug, whatever it threw) has its batch sent again, not dead-lettered", async () => {
    const metrics = new Metrics();
    const deadLetters = new DeadLetterFile(join(driverDir.path, "throws"));
    let calls = 0;
    const sink: Sink = {
      name: "throwing",
      type: "test",
      maxInFlight: 1,
      async send() {
        if (++calls === 1) throw new NagareError("SINK_REJECTED", "a sink must answer, not throw");
        return { status: "delivered" };
      },
      async close() {},
    };
    const driver = new SinkDriver(sink, deadLetters, new Logger("error"), metrics, { retryInitialMs: 1, retryMaxMs: 2 });
    const done: Batch[] = [];
    driver.enqueue(batch([record("a", 400)], [sink.name], (b) => done.push(b)));
    await waitFor("the batch settled", () => done.length === 1);
    await driver.stop();
    expect(calls).toBe(2);
    expect(existsSync(deadLetters.pathOf(sink.name))).toBe(false);
    expect(metrics.read("nagare_sink_errors_total", { sink: sink.name, code: "INTERNAL" })).toBe(1);
  });

  test("stop() aborts the deliveries' signal and returns although an attempt never answers", async () => {
    const sink = new ScriptedSink(2);
    const { driver, batches } = driverWith(sink);
    driver.enqueue(batches[0]!);
    const signal = sink.attempts[0]!.delivery.signal;
    const started = performance.now();
    await driver.stop(200);
    expect(signal.aborted).toBe(true);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe("memory buffer", () => {
  test("pauses at the limit and resumes only below the low watermark", async () => {
    const buffer = new MemoryBuffer(1000, undefined, 0.5);
    buffer.reserve(999);
    expect(buffer.waitForRoom()).toBeUndefined();
    buffer.reserve(1);
    const room = buffer.waitForRoom();
    expect(room).toBeInstanceOf(Promise);
    let resumed = false;
    void room!.then(() => (resumed = true));
    buffer.release(400);
    await Promise.resolve();
    expect(resumed).toBe(false);
    expect(buffer.isPaused).toBe(true);
    buffer.release(100);
    await room;
    expect(resumed).toBe(true);
    expect(buffer.waitForRoom()).toBeUndefined();
    expect(buffer.usedBytes).toBe(500);
  });
});

describe("batcher", () => {
  test("seals by count, by bytes and by timeout", async () => {
    const sealed: number[] = [];
    const batcher = new Batcher({ maxBytes: 100, maxRecords: 3, timeoutMs: 20 }, (records) => sealed.push(records.length));
    for (let i = 0; i < 3; i++) batcher.add(record("a", i, 1));
    expect(sealed).toEqual([3]);
    batcher.add(record("a", 9, 60));
    batcher.add(record("a", 10, 60));
    expect(sealed).toEqual([3, 2]);
    batcher.add(record("a", 11, 1));
    expect(sealed).toEqual([3, 2]);
    const deadline = Date.now() + 2000;
    while (sealed.length < 3 && Date.now() < deadline) await Bun.sleep(5);
    expect(sealed).toEqual([3, 2, 1]);
  });
});

describe("checkpoint store", () => {
  test("writes versioned JSON atomically with mode 0600 and reads it back", async () => {
    const dir = mkdtempSync(join(tmp.path, "cp-"));
    const store = new CheckpointStore(dir);
    store.prepare();
    await store.save("journal", "journald", { cursor: "s=1" });
    await store.save("journal", "journald", { cursor: "s=2" });
    const path = store.pathOf("journal");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(store.dir)).toEqual(["journal.json"]);
    const parsed = JSON.parse(readFileSync(path, "utf8"));
    expect(parsed).toMatchObject({ version: 1, source: "journal", type: "journald", position: { cursor: "s=2" } });
    expect(store.load("journal", "journald", journaldPosition)).toMatchObject({ kind: "saved", checkpoint: { position: { cursor: "s=2" } } });
  });

  test("saves that overlap use their own temp files; a temp file left by a crash is removed by prepare()", async () => {
    const dir = mkdtempSync(join(tmp.path, "cp-"));
    const store = new CheckpointStore(dir);
    store.prepare();
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.save("journal", "journald", { cursor: `s=${i}` })));
    expect(readdirSync(store.dir)).toEqual(["journal.json"]);
    writeFileSync(`${store.pathOf("journal")}.tmp-999-1`, "{");
    store.prepare();
    expect(readdirSync(store.dir)).toEqual(["journal.json"]);
  });

  test("an empty, truncated or corrupt checkpoint is moved aside and reported as lost", () => {
    const dir = mkdtempSync(join(tmp.path, "cp-"));
    const store = new CheckpointStore(dir);
    store.prepare();
    const cases: [string, string][] = [
      ["", "empty"],
      ['{"version":1,"source":"journal","type":"journald","pos', "not valid JSON"],
      ["{not json", "not valid JSON"],
      ['{"version":0,"source":"journal","position":1}', "unsupported version 0 (expected 1)"],
      ['{"version":1,"source":"other","position":1}', 'belongs to source "other"'],
      ['{"version":1,"source":"journal","type":"journald","position":{"cursor":42}}', "its position does not fit a journald source (cursor: "],
      ['{"version":1,"source":"journal","type":"journald","position":{"cursor":"s=1","file":{"path":"/x","dev":1,"ino":-2,"offset":0}}}', "file.ino: "],
    ];
    for (const [text, reason] of cases) {
      writeFileSync(store.pathOf("journal"), text);
      const loaded = store.load("journal", "journald", journaldPosition);
      expect(loaded.kind).toBe("lost");
      expect((loaded as { reason: string }).reason).toContain(reason);
      expect(existsSync(store.pathOf("journal"))).toBe(false);
    }
    expect(readdirSync(store.dir).filter((n) => n.startsWith("journal.json.corrupt-")).length).toBeGreaterThan(0);
    // A checkpoint of another source type under this name is not a lost position: the new source starts as configured.
    writeFileSync(store.pathOf("journal"), '{"version":1,"source":"journal","type":"docker","position":{"containers":{}}}');
    expect(store.load("journal", "journald", journaldPosition)).toMatchObject({ kind: "other-type", type: "docker" });
    expect(readdirSync(store.dir).filter((n) => n.startsWith("journal.json.docker-")).length).toBe(1);
    expect(store.load("journal", "journald", journaldPosition)).toEqual({ kind: "none" });
  });

  test("a checkpoint of a newer format version is refused by its version alone and left in place", () => {
    const dir = mkdtempSync(join(tmp.path, "cp-"));
    const store = new CheckpointStore(dir);
    store.prepare();
    for (const text of ['{"version":2,"shape":"anything else"}', '{"version": 3, "source": "journal", "position": [tr']) {
      writeFileSync(store.pathOf("journal"), text);
      let error: unknown;
      try {
        store.load("journal", "journald", journaldPosition);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(NagareError);
      expect((error as NagareError).code).toBe("CHECKPOINT_UNSUPPORTED");
      expect((error as Error).message).toContain(store.pathOf("journal"));
      expect((error as Error).message).toContain("nagare checkpoints --reset journal");
      expect(() => store.assertSupported(["other", "journal"])).toThrow(/newer nagare/);
      expect(readFileSync(store.pathOf("journal"), "utf8")).toBe(text);
    }
    expect(store.list()[0]!.problem).toMatch(/newer nagare \(format version 3/);
    expect(store.reset("journal")).toBe(true);
    expect(store.reset("journal")).toBe(false);
    expect(store.load("journal", "journald", journaldPosition)).toEqual({ kind: "none" });
  });
});

describe("data directory lock", () => {
  test("a second holder is refused, naming the first one's pid; released, it can be taken again", () => {
    const dir = mkdtempSync(join(tmp.path, "cp-"));
    const first = new DataDirLock(join(dir, "data"));
    const second = new DataDirLock(join(dir, "data"));
    first.acquire();
    expect(() => second.acquire()).toThrow(new RegExp(`in use by another nagare \\(pid ${process.pid}\\)`));
    first.release();
    second.acquire();
    expect(readFileSync(second.path, "utf8")).toBe(`${process.pid}\n`);
    second.release();
  });
});

describe("JSON record shape", () => {
  test("binary values become base64 and are listed; the id is added under id_field", () => {
    const r = record("a", 1);
    r.fields = { MESSAGE: "hi", BLOB: new Uint8Array([0xff, 0x00, 0x41]), TAG: ["x", new Uint8Array([0x80])] };
    r.binaryFields = ["BLOB", "TAG"];
    const out = JSON.parse(encodeFieldsJson({ ...r, id: "abc" }, "_nagare_id"));
    expect(out).toEqual({ MESSAGE: "hi", BLOB: "/wBB", TAG: ["eA==", "gA=="], _nagare_binary: ["BLOB", "TAG"], _nagare_id: "abc" });
    expect(r.fields.BLOB).toBeInstanceOf(Uint8Array);
  });

  test("without binary fields or id the fields are shipped as they are", () => {
    const r = record("a", 1);
    expect(encodeFieldsJson(r, undefined)).toBe('{"MESSAGE":"1"}');
    r.fields = {};
    expect(encodeFieldsJson(r, "id")).toBe('{"id":"1"}');
  });
});

describe("backoff", () => {
  test("grows exponentially with jitter and is capped", () => {
    const b = new Backoff(100, 1000, () => 1);
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000]);
    const low = new Backoff(100, 1000, () => 0);
    expect(low.next()).toBe(50);
    b.reset();
    expect(b.next()).toBe(100);
  });
});

describe("the agent's own log", () => {
  test("JSON lines with levels; repeated messages are rate-limited and report how many were held back", async () => {
    const { openSync, closeSync } = await import("node:fs");
    const { Logger } = await import("../src/observe/log.ts");
    const path = join(mkdtempSync(join(tmp.path, "log-")), "log.jsonl");
    const fd = openSync(path, "w");
    let now = 1_000_000;
    const log = new Logger("info", { fd, now: () => now }).child({ component: "kafka" });
    log.debug("not written at info");
    for (let i = 0; i < 5; i++) log.limited("error", "send-failed", `attempt ${i} failed`);
    now += 10_001;
    log.limited("error", "send-failed", "attempt 5 failed");
    log.warn("a warning", { bytes: 3 });
    closeSync(fd);
    const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.level, l.msg, l.repeated, l.component])).toEqual([
      ["error", "attempt 0 failed", undefined, "kafka"],
      ["error", "attempt 5 failed", 4, "kafka"],
      ["warn", "a warning", undefined, "kafka"],
    ]);
    expect(lines[2].bytes).toBe(3);
    expect(lines[0].ts).toBe(new Date(1_000_000).toISOString());
  });
});
