/**
 * core/reload.ts on a real Pipeline with scripted components: a changed sink's successor sends its predecessor's
 * batches first and in order; a removed source's batches leave the buffer even while the only sink is down; a
 * removed sink drains for the drain timeout, then lets go and the position moves on; a typed position that does
 * not fit its schema is lost, not trusted.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { SendResult, Sink, Source, SourceContext } from "../src/core/component.ts";
import type { Delivery } from "../src/core/delivery.ts";
import { NagareError } from "../src/core/errors.ts";
import { Pipeline } from "../src/core/pipeline.ts";
import type { LogRecord } from "../src/core/record.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { tempDir, waitFor } from "./support/util.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
let cases = 0;

const counterPosition = z.object({ n: z.number().int().nonnegative() });
type CounterPosition = z.output<typeof counterPosition>;

/** Emits records n = from+1 … from+count of stream "s" (its position: n), then idles until stopped. */
class CounterSource implements Source<number, CounterPosition> {
  readonly type = "counter";
  readonly positionSchema = counterPosition;
  startedAt: number | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  /** Resolves on stop: a real source stops waiting for room when it is stopped. */
  private readonly stopping = new Promise<void>((resolve) => (this.wake = resolve));

  /** Records emitted by this instance. */
  emitted = 0;

  constructor(
    readonly name: string,
    private readonly total: number,
    /** Sleeps 2 ms after every this many records (0: reads as fast as the buffer lets it). */
    private readonly paceEvery = 0,
  ) {}

  async run(ctx: SourceContext<CounterPosition, number>): Promise<void> {
    let n = ctx.saved?.n ?? 0;
    this.startedAt = n;
    while (!this.stopped && n < this.total) {
      n++;
      this.emitted++;
      ctx.emit(record(this.name, n));
      if (this.paceEvery > 0 && n % this.paceEvery === 0) await Bun.sleep(2);
      const room = ctx.waitForRoom();
      if (room !== undefined) await Promise.race([room, this.stopping]);
    }
    await this.stopping;
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  checkpoint(watermarks: ReadonlyMap<string, number>): CounterPosition | undefined {
    const n = watermarks.get("s");
    return n === undefined ? undefined : { n };
  }
}

function record(source: string, n: number): LogRecord<number> {
  return { timeSec: n, timeNsec: 0, fields: { n }, binaryFields: undefined, source, stream: "s", id: `${source}-${n}`, size: 1000, position: n };
}

/**
 * Delivers while `up`; while down it fails at once (retryably), so that no attempt is in flight between two
 * turns of the event loop — the batches a reload finds are all waiting in the driver. Keeps what it delivered.
 */
class SwitchSink implements Sink {
  readonly type = "switch";
  readonly maxInFlight = 2;
  up = true;
  failures = 0;
  readonly delivered: string[] = [];

  constructor(
    readonly name: string,
    /** How long a delivery takes; it does not stop for the abort signal (a write the kernel will not cancel). */
    private readonly delayMs = 1,
  ) {}

  async send(delivery: Delivery): Promise<SendResult> {
    if (!this.up) {
      this.failures++;
      return { status: "failed", error: new NagareError("SINK_UNAVAILABLE", `${this.name} is down`, { retryable: true }) };
    }
    await Bun.sleep(this.delayMs);
    for (const r of delivery.batch.records) this.delivered.push(r.id);
    return { status: "delivered" };
  }

  async close(): Promise<void> {}
}

function pipelineOf(sources: Source[], sinks: Sink[], routes: Record<string, string[]>, dataDir = join(tmp.path, `case-${++cases}`), metrics = new Metrics(), bufferMaxBytes = 64 * 1000): Pipeline {
  const log = new Logger("error", { fd: openSync(join(tmp.path, `log-${cases}.jsonl`), "a") });
  return new Pipeline(
    {
      dataDir,
      bufferMaxBytes,
      batch: { maxBytes: 10_000, maxRecords: 10, timeoutMs: 5 },
      checkpointIntervalMs: 20,
      routes: new Map(Object.entries(routes)),
      log,
      metrics,
      retryInitialMs: 5,
      retryMaxMs: 20,
    },
    sources,
    sinks,
  );
}

const ids = (source: string, from: number, count: number) => Array.from({ length: count }, (_, i) => `${source}-${from + i}`);

describe("reloads on a running pipeline", () => {
  test("a changed sink's successor sends what its predecessor held first, in read order: nothing twice, nothing lost", async () => {
    const source = new CounterSource("a", 300);
    const old = new SwitchSink("out");
    old.up = false;
    const pipeline = pipelineOf([source], [old], { a: ["out"] });
    pipeline.start();
    await waitFor("the buffer to fill behind the down sink", () => pipeline.buffer.isPaused);
    const successor = new SwitchSink("out");
    await pipeline.reconfigure({ keepSources: new Set(["a"]), keepSinks: new Set(), addSources: [], addSinks: [successor], routes: new Map([["a", ["out"]]]), drainTimeoutMs: 1000 });
    await waitFor("all 300 at the successor", () => successor.delivered.length >= 300);
    expect(await pipeline.stop(1000)).toBe(0);
    expect(old.delivered).toEqual([]);
    expect(successor.delivered).toEqual(ids("a", 1, 300));
    expect(pipeline.checkpoints.load("a", "counter", counterPosition)).toMatchObject({ kind: "saved", checkpoint: { position: { n: 300 } } });
  });

  test("batches sealed while the old sink finishes its attempts in flight queue behind the ones it hands over", async () => {
    const source = new CounterSource("a", 600, 5);
    const old = new SwitchSink("out", 60);
    const metrics = new Metrics();
    // A buffer large enough that the source goes on reading while the old sink finishes its attempts.
    const pipeline = pipelineOf([source], [old], { a: ["out"] }, undefined, metrics, 10_000_000);
    pipeline.start();
    await waitFor("batches waiting behind the slow sink", () => metrics.read("nagare_sink_queued_batches", { sink: "out" }) > 4 && old.delivered.length > 0);
    const successor = new SwitchSink("out");
    await pipeline.reconfigure({ keepSources: new Set(["a"]), keepSinks: new Set(), addSources: [], addSinks: [successor], routes: new Map([["a", ["out"]]]), drainTimeoutMs: 1000 });
    await waitFor("all 600 delivered", () => old.delivered.length + successor.delivered.length >= 600);
    expect(await pipeline.stop(1000)).toBe(0);
    // The old sink finished what it had in flight; the successor took the rest, oldest first.
    expect([...old.delivered, ...successor.delivered]).toEqual(ids("a", 1, 600));
  });

  test("a removed source's batches leave the buffer while the only sink is down; a changed one reads them again", async () => {
    const a = new CounterSource("a", 1000);
    const b = new CounterSource("b", 1000);
    const sink = new SwitchSink("out");
    sink.up = false;
    const pipeline = pipelineOf([a, b], [sink], { a: ["out"], b: ["out"] });
    pipeline.start();
    await waitFor("the buffer to fill behind the down sink, and a retry failed", () => pipeline.buffer.isPaused && sink.failures > 2);
    const a2 = new CounterSource("a", 1000);
    await pipeline.reconfigure({ keepSources: new Set(), keepSinks: new Set(["out"]), addSources: [a2], addSinks: [], routes: new Map([["a", ["out"]]]), drainTimeoutMs: 1000 });
    expect(a2.startedAt).toBe(0);
    // The retired sources' batches left the buffer as the reload withdrew them, not at their next retry: the
    // successor could read at once.
    expect(a2.emitted).toBeGreaterThan(30);
    // b is gone and a started anew: only what a2 read since counts, and it stays within the buffer.
    await waitFor("the buffer to fill again with a2 alone", () => pipeline.buffer.isPaused);
    expect(pipeline.buffer.usedBytes).toBeLessThanOrEqual(64 * 1000 + 10_000);
    sink.up = true;
    await waitFor("a's 1000 delivered", () => sink.delivered.filter((id) => id.startsWith("a-")).length >= 1000);
    expect(await pipeline.stop(1000)).toBe(0);
    expect(sink.delivered).toEqual(ids("a", 1, 1000));
    expect(pipeline.buffer.usedBytes).toBe(0);
  });

  test("a removed sink delivers for the drain timeout, then lets go; the kept sink's position moves on", async () => {
    const source = new CounterSource("a", 50);
    const kept = new SwitchSink("kept");
    const gone = new SwitchSink("gone");
    gone.up = false;
    const pipeline = pipelineOf([source], [kept, gone], { a: ["kept", "gone"] });
    pipeline.start();
    await waitFor("the kept sink to have all 50", () => kept.delivered.length === 50);
    const started = performance.now();
    const outcome = await pipeline.reconfigure({ keepSources: new Set(["a"]), keepSinks: new Set(["kept"]), addSources: [], addSinks: [], routes: new Map([["a", ["kept"]]]), drainTimeoutMs: 300 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(outcome.dropped).toEqual(new Map([["gone", 50]]));
    await pipeline.saveCheckpoints();
    expect(pipeline.checkpoints.load("a", "counter", counterPosition)).toMatchObject({ kind: "saved", checkpoint: { position: { n: 50 } } });
    expect(pipeline.buffer.usedBytes).toBe(0);
    expect(await pipeline.stop(1000)).toBe(0);
  });

  test("a saved position that does not fit the source's schema is lost and moved aside, and the source starts from its oldest", async () => {
    const dataDir = join(tmp.path, "bad-position");
    const first = pipelineOf([new CounterSource("a", 5)], [new SwitchSink("out")], { a: ["out"] }, dataDir);
    first.start();
    expect(await first.stop(1000)).toBe(0);
    writeFileSync(first.checkpoints.pathOf("a"), JSON.stringify({ version: 1, source: "a", type: "counter", saved_at: "x", position: { n: "5" } }));
    const source = new CounterSource("a", 5);
    const sink = new SwitchSink("out");
    const second = pipelineOf([source], [sink], { a: ["out"] }, dataDir);
    second.start();
    await waitFor("5 delivered again", () => sink.delivered.length === 5);
    expect(source.startedAt).toBe(0);
    expect(await second.stop(1000)).toBe(0);
  });
});
