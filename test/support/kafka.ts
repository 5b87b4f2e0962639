/**
 * Test helpers for tests that need a Kafka cluster: librdkafka's mock cluster (test/kafka-mock/mock.c, built
 * against Debian 12's librdkafka 2.0.2) run as a child process and driven by line commands, and kcat to read
 * topics back.
 *
 * Facts about the mock these helpers and their users rely on (checked against librdkafka 2.0.2; the report
 * that came with this file has the details):
 *  - Brokers listen on 127.0.0.1 with random ports, ids 1..N. PLAINTEXT only (no SSL, no SASL handlers).
 *  - Each partition keeps at most 5 MiB of record batches (and 100 000 batches); appending beyond that drops
 *    the OLDEST batches silently and moves the log start offset. A big test must consume while it produces
 *    (startConsumer), which fails loudly (auto.offset.reset=error) when it falls behind the trimmed log.
 *  - Metadata for an unknown topic auto-creates it with 4 partitions (replication factor min(3, brokers)):
 *    create topics explicitly (startMockCluster({ topics }) or the `topic` command) before anyone asks.
 *  - acks is ignored (every Produce is answered after the append), message.max.bytes is not enforced (a big
 *    batch is accepted unless MSG_SIZE_TOO_LARGE is injected), there is no CreateTopics API.
 *  - `down <id>` closes the broker's connections and refuses new ones (ECONNREFUSED, same port after `up`);
 *    leadership does NOT move, Metadata keeps naming the down broker as leader.
 *  - A produce the mock received is appended at once; only the response is delayed (rtt) or lost (down), so a
 *    send that failed with a timeout or "Closed connection" may have been written.
 *  - Metadata reports ControllerId 0 while broker ids are 1..N, and Metadata goes only up to v2 (Kafka 4 starts
 *    at v4): a client must negotiate versions. InitProducerId gives a producer id, but Produce checks no
 *    sequence numbers (duplicates and gaps are written): idempotence is proven on the real cluster only.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";

const KAFKA_MOCK_DIR = join(import.meta.dir, "..", "kafka-mock");
const KAFKA_MOCK_SOURCE = join(KAFKA_MOCK_DIR, "mock.c");
const KAFKA_MOCK_BIN = join(KAFKA_MOCK_DIR, "build", "mock");
export const KCAT = "kcat";

const COMMAND_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;

export type Proc = Subprocess<"pipe" | "ignore", "pipe", "pipe">;

// ---------------------------------------------------------------------------------------------------------
// Process plumbing

/** Every child started here, killed on process exit as a last resort (the mock also exits on stdin EOF). */
const live = new Set<Proc>();
let exitHookInstalled = false;
export function track(proc: Proc): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const p of live) {
        try {
          p.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
    });
  }
  live.add(proc);
  void proc.exited.then(() => live.delete(proc));
}

function timeout(ms: number): { promise: Promise<"timeout">; cancel: () => void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** Waits for the exit within `ms`; otherwise SIGKILL and reap. Returns the exit code (null if killed here). */
export async function reap(proc: Proc, ms: number): Promise<number | null> {
  const t = timeout(ms);
  const r = await Promise.race([proc.exited, t.promise]);
  t.cancel();
  if (r !== "timeout") return r;
  proc.kill("SIGKILL");
  await proc.exited;
  return null;
}

/** Splits a byte stream into lines (without the LF); keeps the tail of what it saw for error messages. */
class LineReader {
  private readonly lines: Uint8Array[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>, private readonly onLine?: (line: Uint8Array) => void) {
    this.done = this.pump(stream);
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let pending: Uint8Array = new Uint8Array(0);
    try {
      for await (const chunk of stream) {
        let buf = chunk;
        if (pending.length > 0) {
          buf = new Uint8Array(pending.length + chunk.length);
          buf.set(pending);
          buf.set(chunk, pending.length);
        }
        let start = 0;
        for (let i = buf.indexOf(10, start); i !== -1; i = buf.indexOf(10, start)) {
          this.push(buf.subarray(start, i));
          start = i + 1;
        }
        pending = buf.slice(start);
      }
    } finally {
      if (pending.length > 0) this.push(pending);
      this.ended = true;
      this.wake();
    }
  }

  private push(line: Uint8Array): void {
    if (this.onLine) this.onLine(line);
    else this.lines.push(line);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The next line, null at end of stream, "timeout" after `ms`. Only for readers without onLine. */
  async next(ms: number): Promise<string | null | "timeout"> {
    const t = timeout(ms);
    try {
      for (;;) {
        const line = this.lines.shift();
        if (line !== undefined) return new TextDecoder().decode(line);
        if (this.ended) return null;
        const woke = new Promise<"woke">((resolve) => {
          this.waiter = () => resolve("woke");
        });
        if ((await Promise.race([woke, t.promise])) === "timeout") return "timeout";
      }
    } finally {
      t.cancel();
    }
  }
}

/** Collects a stream as text, keeping only the last `max` characters. */
function tailOf(stream: ReadableStream<Uint8Array>, max = 64 * 1024, forward = false): { text: () => string; done: Promise<void> } {
  let text = "";
  const done = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      if (forward) process.stderr.write(chunk);
      text += dec.decode(chunk, { stream: true });
      if (text.length > 2 * max) text = text.slice(-max);
    }
  })();
  return { text: () => text.slice(-max), done };
}

// ---------------------------------------------------------------------------------------------------------
// Building the mock

let building: Promise<string> | undefined;

async function run(cmd: string[], what: string, ms = 60_000): Promise<string> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" }) as Proc;
  track(proc);
  const out = new Response(proc.stdout).text();
  const err = new Response(proc.stderr).text();
  const code = await reap(proc, ms);
  const [stdout, stderr] = await Promise.all([out, err]);
  if (code !== 0) throw new Error(`${what} failed (${code === null ? `timed out after ${ms} ms` : `exit ${code}`}): ${stderr.trim()}`);
  return stdout;
}

/**
 * Compiles test/kafka-mock/mock.c into test/kafka-mock/build/mock unless the binary is newer than the source.
 * Needs gcc, pkg-config and librdkafka-dev (scripts/setup.sh installs them). Safe against concurrent builds
 * (compiles to a temporary name, then renames). Returns the binary's path.
 */
export function buildMock(): Promise<string> {
  building ??= (async () => {
    const fresh = existsSync(KAFKA_MOCK_BIN) && statSync(KAFKA_MOCK_BIN).mtimeMs >= statSync(KAFKA_MOCK_SOURCE).mtimeMs;
    if (fresh) return KAFKA_MOCK_BIN;
    const flags = (await run(["pkg-config", "--cflags", "--libs", "rdkafka"], "pkg-config --cflags --libs rdkafka (package librdkafka-dev)"))
      .trim()
      .split(/\s+/)
      .filter((f) => f.length > 0);
    mkdirSync(join(KAFKA_MOCK_DIR, "build"), { recursive: true });
    const tmp = `${KAFKA_MOCK_BIN}.${process.pid}.tmp`;
    try {
      await run(["gcc", "-O2", "-Wall", "-Wextra", "-o", tmp, KAFKA_MOCK_SOURCE, ...flags], "compiling test/kafka-mock/mock.c");
      renameSync(tmp, KAFKA_MOCK_BIN);
    } finally {
      rmSync(tmp, { force: true });
    }
    return KAFKA_MOCK_BIN;
  })();
  const p = building;
  p.catch(() => {
    if (building === p) building = undefined; // let a later call try again
  });
  return p;
}

// ---------------------------------------------------------------------------------------------------------
// The mock cluster

export interface MockCluster {
  /** "127.0.0.1:port,..." */
  bootstrap: string;
  /** each "127.0.0.1:port"; broker id i+1 is brokers[i] */
  brokers: string[];
  /**
   * Sends one command line (see test/kafka-mock/mock.c: topic, down, up, errors, broker-errors, clear, rtt,
   * leader, topic-error, ping) and waits for its answer; throws on "ERR ..." and after 10 s. Commands are
   * serialized. After a timeout the cluster is unusable (answers would be out of step) and further commands throw.
   */
  command(line: string): Promise<void>;
  /** Sends quit, waits for the exit (SIGKILL after 5 s), reaps. Idempotent; never throws. */
  stop(): Promise<void>;
  /** The mock's stderr so far (the last 64 KiB): librdkafka's own log. */
  stderr(): string;
  /** The mock process's pid (e.g. to check that it was reaped). */
  pid: number;
}

export interface MockClusterOptions {
  /** Number of brokers (ids 1..N); default 3. */
  brokers?: number;
  /** Topics created before startMockCluster returns; rf defaults to min(3, brokers). */
  topics?: { name: string; partitions: number; rf?: number }[];
}

/**
 * Builds test/kafka-mock/mock (cached in test/kafka-mock/build/, rebuilt when mock.c is newer) and starts it.
 * NAGARE_KAFKA_MOCK_DEBUG=1 turns on librdkafka's mock debug log and forwards the mock's stderr.
 */
export async function startMockCluster(opts: MockClusterOptions = {}): Promise<MockCluster> {
  const bin = await buildMock();
  const debug = process.env.NAGARE_KAFKA_MOCK_DEBUG === "1";
  const args = ["--brokers", String(opts.brokers ?? 3)];
  for (const t of opts.topics ?? []) {
    if (/[\s:]/.test(t.name) || t.name.length === 0) throw new Error(`startMockCluster: bad topic name ${JSON.stringify(t.name)}`);
    args.push("--topic", t.rf === undefined ? `${t.name}:${t.partitions}` : `${t.name}:${t.partitions}:${t.rf}`);
  }
  if (debug) args.push("--debug");
  const proc = Bun.spawn([bin, ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" }) as Subprocess<"pipe", "pipe", "pipe">;
  track(proc as Proc);
  const err = tailOf(proc.stderr, 64 * 1024, debug);
  const out = new LineReader(proc.stdout);

  let queue: Promise<unknown> = Promise.resolve();
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      // Let a command in flight get its answer first (bounded), so "quit" is not taken for its answer.
      const t = timeout(COMMAND_TIMEOUT_MS);
      await Promise.race([queue, t.promise]);
      t.cancel();
      try {
        proc.stdin.write("quit\n");
        await proc.stdin.end();
      } catch {
        // already exited: the pipe is closed
      }
      await reap(proc as Proc, STOP_GRACE_MS);
      await Promise.race([Promise.all([out.done, err.done]), timeout(1000).promise]);
    })());

  const ready = await out.next(START_TIMEOUT_MS);
  if (typeof ready !== "string" || !ready.startsWith("READY ")) {
    await stop();
    throw new Error(`kafka mock did not start (${ready === "timeout" ? "no READY within 10 s" : `got ${JSON.stringify(ready)}`}): ${err.text().trim()}`);
  }
  const bootstrap = ready.slice("READY ".length).trim();

  let broken: string | undefined;
  const command = (line: string): Promise<void> => {
    if (line.includes("\n")) return Promise.reject(new Error(`kafka mock command contains a newline: ${JSON.stringify(line)}`));
    const result = queue.then(async () => {
      if (broken !== undefined) throw new Error(`kafka mock unusable: ${broken}`);
      if (stopped !== undefined) throw new Error(`kafka mock command ${JSON.stringify(line)} after stop()`);
      try {
        proc.stdin.write(`${line}\n`);
        await proc.stdin.flush();
      } catch (e) {
        broken = `writing ${JSON.stringify(line)}: ${String(e)}`;
        throw new Error(`kafka mock: ${broken}`);
      }
      const answer = await out.next(COMMAND_TIMEOUT_MS);
      if (answer === "OK") return;
      if (typeof answer === "string" && answer.startsWith("ERR ")) throw new Error(`kafka mock: ${line}: ${answer.slice(4)}`);
      broken = answer === "timeout" ? `no answer to ${JSON.stringify(line)} within 10 s` : `answer to ${JSON.stringify(line)} was ${JSON.stringify(answer)}`;
      throw new Error(`kafka mock: ${broken}; stderr: ${err.text().trim()}`);
    });
    queue = result.catch(() => undefined);
    return result;
  };

  return { bootstrap, brokers: bootstrap.split(","), command, stop, stderr: err.text, pid: proc.pid };
}

// ---------------------------------------------------------------------------------------------------------
// Reading topics back with kcat

export interface KafkaMessage {
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
  /** Header values by key; with a repeated key the last one wins (all of them are in headerList). A null header value reads as "". */
  headers: Record<string, string>;
  /** CreateTime in ms as the producer set it (the mock keeps the producer's batches as they are). */
  timestamp: number;
  /** All headers in order, with repeats and null values. */
  headerList: [string, string | null][];
  /** The exact bytes of key and value (key/value above are their UTF-8 decoding). */
  keyBytes: Uint8Array | null;
  valueBytes: Uint8Array | null;
}

interface KcatJson {
  topic: string;
  partition: number;
  offset: number;
  ts?: number;
  headers?: (string | null)[];
  key: string | null;
  payload: string | null;
}

const utf8 = new TextDecoder();

/** kcat (yajl) writes bytes >= 0x80 unescaped and escapes only controls: decode each byte as one char, parse,
 *  and every string's char codes are its exact bytes. */
function binaryString(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "latin1"));
}

/** Parses one line of `kcat -J` output. Throws on anything else. */
export function parseKcatJsonLine(line: Uint8Array): KafkaMessage {
  const j = JSON.parse(Buffer.from(line).toString("latin1")) as KcatJson;
  if (typeof j.partition !== "number" || typeof j.offset !== "number") throw new Error(`not a kcat -J message: ${utf8.decode(line)}`);
  const keyBytes = j.key === null ? null : binaryString(j.key);
  const valueBytes = j.payload === null ? null : binaryString(j.payload);
  const headerList: [string, string | null][] = [];
  const headers: Record<string, string> = {};
  const h = j.headers ?? [];
  for (let i = 0; i + 1 < h.length; i += 2) {
    const k = utf8.decode(binaryString(h[i] ?? ""));
    const raw = h[i + 1];
    const v = raw === null || raw === undefined ? null : utf8.decode(binaryString(raw));
    headerList.push([k, v]);
    headers[k] = v ?? "";
  }
  return {
    partition: j.partition,
    offset: j.offset,
    key: keyBytes === null ? null : utf8.decode(keyBytes),
    value: valueBytes === null ? null : utf8.decode(valueBytes),
    headers,
    timestamp: j.ts ?? -1,
    headerList,
    keyBytes,
    valueBytes,
  };
}

function kcatConsumeArgs(bootstrap: string, topic: string, fetchWaitMs: number): string[] {
  return [
    KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-J", "-q",
    // Never skip silently: reading below the log start (trimmed by the mock's 5 MiB limit) is an error.
    "-X", "auto.offset.reset=error",
    // The mock answers a fetch that finds no data only after this wait (and the end of a partition is only
    // known from such an answer): the 500 ms default makes every consumeAll take half a second.
    "-X", `fetch.wait.max.ms=${fetchWaitMs}`,
  ];
}

/**
 * Reads all messages of a topic from the beginning to the current end of every partition (`kcat -C -e -J`),
 * sorted by partition, then offset. Throws if kcat fails or takes longer than timeoutMs (default 30 s).
 * Note: the mock auto-creates an unknown topic (4 partitions) when kcat asks for its metadata.
 */
export async function consumeAll(bootstrap: string, topic: string, opts: { timeoutMs?: number } = {}): Promise<KafkaMessage[]> {
  const ms = opts.timeoutMs ?? 30_000;
  const proc = Bun.spawn([...kcatConsumeArgs(bootstrap, topic, 10), "-e"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }) as Proc;
  track(proc);
  const out = new Response(proc.stdout).arrayBuffer();
  const err = new Response(proc.stderr).text();
  const code = await reap(proc, ms);
  const [bytes, stderr] = await Promise.all([out, err]);
  if (code !== 0) {
    throw new Error(`consumeAll ${topic}: kcat ${code === null ? `did not finish within ${ms} ms` : `exited ${code}`}: ${stderr.trim()}`);
  }
  const all = new Uint8Array(bytes);
  const messages: KafkaMessage[] = [];
  let start = 0;
  for (let i = all.indexOf(10); i !== -1; i = all.indexOf(10, start)) {
    if (i > start) messages.push(parseKcatJsonLine(all.subarray(start, i)));
    start = i + 1;
  }
  if (start < all.length) messages.push(parseKcatJsonLine(all.subarray(start)));
  return messages.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

export interface BackgroundConsumer {
  /** Messages in arrival order (per partition in offset order). */
  messages: KafkaMessage[];
  /** Resolves once pred(messages) holds; rejects after timeoutMs (default 30 s) or when kcat failed. */
  waitFor(pred: (messages: KafkaMessage[]) => boolean, timeoutMs?: number): Promise<void>;
  /**
   * Stops kcat (SIGTERM, SIGKILL after 5 s) and reaps it. Throws if kcat had failed on its own before (e.g. it
   * fell behind the mock's 5 MiB per partition and hit "Offset out of range"): then `messages` is incomplete.
   */
  stop(): Promise<void>;
  /** kcat's pid (a test can SIGSTOP it to make it fall behind). */
  pid: number;
}

/**
 * Consumes a topic from the beginning in the background (`kcat -C -o beginning -J -u`, no -e), appending to
 * `messages` as lines arrive. Start it before producing (the topic must exist: create it first).
 */
export function startConsumer(bootstrap: string, topic: string): BackgroundConsumer {
  const messages: KafkaMessage[] = [];
  let failure: Error | undefined;
  let stopping = false;
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const w of wakers) w();
  };
  const proc = Bun.spawn([...kcatConsumeArgs(bootstrap, topic, 50), "-u"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }) as Proc;
  track(proc);
  const err = tailOf(proc.stderr);
  const out = new LineReader(proc.stdout, (line) => {
    if (line.length === 0) return;
    try {
      messages.push(parseKcatJsonLine(line));
    } catch (e) {
      failure ??= new Error(`startConsumer ${topic}: unparsable kcat line: ${String(e)}`);
    }
    wake();
  });
  // kcat exits 0 on SIGTERM; any other exit means it failed (e.g. 1 on "Offset out of range").
  const finished = proc.exited.then(async (code) => {
    await Promise.race([Promise.all([out.done, err.done]), timeout(1000).promise]);
    if (code !== 0 || !stopping) failure ??= new Error(`startConsumer ${topic}: kcat exited ${code}${stopping ? "" : " on its own"}: ${err.text().trim()}`);
    wake();
  });

  const waitFor = async (pred: (m: KafkaMessage[]) => boolean, timeoutMs = 30_000): Promise<void> => {
    const t = timeout(timeoutMs);
    try {
      for (;;) {
        if (pred(messages)) return;
        if (failure) throw failure;
        let waker: (() => void) | undefined;
        const woke = new Promise<"woke">((resolve) => {
          waker = () => resolve("woke");
          wakers.add(waker);
        });
        const r = await Promise.race([woke, t.promise]);
        if (waker) wakers.delete(waker);
        if (r === "timeout") {
          if (pred(messages)) return;
          const f = failure as Error | undefined; // may have been set meanwhile
          throw new Error(`startConsumer ${topic}: condition not met within ${timeoutMs} ms (${messages.length} messages so far)${f ? `; ${f.message}` : ""}`);
        }
      }
    } finally {
      t.cancel();
    }
  };

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      const ranUntilNow = proc.exitCode === null && proc.signalCode === null;
      stopping = ranUntilNow;
      let killed = false;
      if (ranUntilNow) {
        proc.kill("SIGTERM");
        killed = (await reap(proc, STOP_GRACE_MS)) === null;
      }
      await finished;
      if (killed) return; // SIGKILLed after the grace period: what was read is still valid
      if (failure) throw failure;
    })());

  return { messages, waitFor, stop, pid: proc.pid };
}
