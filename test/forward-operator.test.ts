/**
 * What an operator sees of the forward sink: a server that requires shared_key when none is set, a wrong key,
 * a server that comes back, a TLS close, a configuration with one server. The texts are asserted exactly.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Batch } from "../src/core/batch.ts";
import { DeadLetterFile } from "../src/core/dead-letter.ts";
import { Delivery } from "../src/core/delivery.ts";
import { describeError } from "../src/core/errors.ts";
import type { LogRecord } from "../src/core/record.ts";
import { SinkDriver } from "../src/core/sink-driver.ts";
import { probeConfig } from "../src/config/connect.ts";
import type { Config } from "../src/config/schema.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { forwardSinkConfig } from "../src/sinks/forward/config.ts";
import { ForwardSink } from "../src/sinks/forward/sink.ts";
import { readJsonLines, runCli, RunningAgent } from "./support/agent.ts";
import { caseDirs } from "./support/config.ts";
import { journalOf, withServer, writeForwardConfig } from "./support/forward-config.ts";
import { makeTestCertificates, startForwardServer, startTlsWitness } from "./support/forward-server.ts";
import { tempDir, waitFor } from "./support/util.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

const REQUIRES_KEY = "requires shared_key: it began with a handshake (HELO) and this sink has none; set shared_key (and username and password if the server has user authentication)";
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A forward sink and its driver in this process, logging to a file, for what needs the driver's own timing. */
function inProcess(dir: string, servers: { port: number }[], retryMs: number, extra: Record<string, unknown> = {}) {
  const logPath = join(dir, "log.jsonl");
  const fd = openSync(logPath, "w");
  const log = new Logger("info", { fd });
  const metrics = new Metrics();
  const config = forwardSinkConfig.parse({ type: "forward", inputs: ["journal"], servers: servers.map((s) => ({ host: "127.0.0.1", port: s.port })), tag: "test", connect_timeout: "2s", ack_timeout: "10s", ...extra });
  const sink = new ForwardSink("fwd", config, log.child({ component: "fwd" }), metrics);
  const driver = new SinkDriver(sink, new DeadLetterFile(join(dir, "dead")), log.child({ component: "fwd" }), metrics, { retryInitialMs: retryMs, retryMaxMs: retryMs });
  return {
    sink,
    driver,
    metrics,
    entries: () => readJsonLines(logPath) as { level: string; msg: string; ts: string }[],
    async stop() {
      await driver.stop();
      await sink.close();
      closeSync(fd);
    },
  };
}

let seq = 0;
function batchOf(count: number, onDone: () => void = () => {}): Batch {
  const records: LogRecord[] = Array.from({ length: count }, (_, i) => ({
    timeSec: 1_700_000_000,
    timeNsec: 0,
    fields: { MESSAGE: `entry ${i + 1}`, SEQ: String(i + 1) },
    binaryFields: undefined,
    source: "journal",
    stream: "journal",
    id: `${seq}-${i}`,
    size: 100,
    position: i,
  }));
  return new Batch("journal", seq++, records, count * 100, ["fwd"], onDone);
}

describe("a server that requires shared_key, and the sink has none", () => {
  test("the ERROR says that the server requires shared_key; its HELO is never read as an ack, and it is not called reachable", async () => {
    await withServer({ sharedKey: "s3cret" }, async (server) => {
      const dir = caseDir();
      const journal = await journalOf(dir, 20);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], shutdownTimeout: "1s" }));
      const name = `127.0.0.1:${server.port}`;
      const expected = new RegExp(`^Sink forward could not deliver a batch of \\d+ records from journal and will send it again in \\d+ ms: forward server ${escape(name)} ${escape(REQUIRES_KEY)}\\.$`);
      await waitFor("the ERROR", () => agent.entries().some((e) => e.level === "error" && expected.test(e.msg)), 20_000);
      // The sink's probes connect again and again; none of them may count the server as reachable.
      await server.waitFor(() => server.connections >= 4, 20_000);
      expect(await agent.stop()).toBe(0);
      const entries = agent.entries();
      expect(entries.filter((e) => /not an ack|ack for a chunk|reachable again/.test(e.msg))).toEqual([]);
      expect(entries.find((e) => e.level === "warn" && e.msg.startsWith(`Forward server ${name} is marked down`))?.msg).toBe(
        `Forward server ${name} is marked down (${REQUIRES_KEY}); batches wait until it answers again, and it is probed again with backoff.`,
      );
      expect(server.events.length).toBe(0);
    });
  }, 60_000);

  test("Fluentd's and Fluent Bit's HELO alike; without require_ack, no chunk is written to it (it would count as delivered and be lost)", async () => {
    for (const flavour of ["fluentd", "fluent-bit"] as const) {
      for (const requireAck of [true, false]) {
        await withServer({ sharedKey: "s3cret", flavour }, async (server) => {
          const agent = inProcess(caseDir(), [{ port: server.port }], 60_000, { require_ack: requireAck });
          try {
            const result = await agent.sink.send(new Delivery(batchOf(3), 0, new AbortController().signal));
            // A key mismatch is the operator's to fix: the records wait for it (retryable), never dead-lettered.
            expect(result.status === "failed" && result.error.retryable).toBe(true);
            expect(describeError((result as { error: unknown }).error)).toBe(`forward server 127.0.0.1:${server.port} ${REQUIRES_KEY}`);
            if (!requireAck) expect(server.handshakes).toEqual([]);
          } finally {
            await agent.stop();
          }
        });
      }
    }
  }, 30_000);

  test("validate --connect reports that the server requires shared_key, and the probe fails", async () => {
    await withServer({ sharedKey: "s3cret" }, async (keyed) => {
      const dir = caseDir();
      const config = writeForwardConfig({ dir, journal: await journalOf(dir, 1), servers: [{ port: keyed.port }] });
      const cli = await runCli(["validate", "--connect", "-c", config]);
      expect(cli.stderr).toContain(`sinks.forward: server 127.0.0.1:${keyed.port}: REFUSED (${REQUIRES_KEY})\n`);
      expect(cli.code).not.toBe(0);
      await withServer({}, async (open) => {
        const config = {
          sources: {},
          sinks: {
            keyed: forwardSinkConfig.parse({ type: "forward", inputs: ["journal"], servers: [{ host: "127.0.0.1", port: keyed.port }], tag: "t" }),
            open: forwardSinkConfig.parse({ type: "forward", inputs: ["journal"], servers: [{ host: "127.0.0.1", port: open.port }], tag: "t" }),
            // The other way round: a shared_key for a server without <security>, which stays silent.
            keyless: forwardSinkConfig.parse({ type: "forward", inputs: ["journal"], servers: [{ host: "127.0.0.1", port: open.port }], tag: "t", shared_key: "k", connect_timeout: "1s" }),
          },
        } as unknown as Config;
        const results = await probeConfig(config);
        expect(results).toEqual([
          { ok: false, refused: true, line: `sinks.keyed: server 127.0.0.1:${keyed.port}: REFUSED (${REQUIRES_KEY})` },
          { ok: true, line: `sinks.open: server 127.0.0.1:${open.port}: reachable (TCP; it asked for no handshake within 500 ms)` },
          { ok: false, refused: true, line: `sinks.keyless: server 127.0.0.1:${open.port}: REFUSED (sent no handshake (HELO) within 1000 ms although shared_key is set; does the server have a <security> section?)` },
        ]);
      });
    });
  }, 30_000);
});

describe("a wrong shared key", () => {
  test("the reason is given once, in the ERROR, in the WARN and in validate --connect", async () => {
    await withServer({ sharedKey: "right" }, async (server) => {
      const dir = caseDir();
      const journal = await journalOf(dir, 20);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], extra: { shared_key: "wrong" }, shutdownTimeout: "1s" }));
      const name = `127.0.0.1:${server.port}`;
      const expected = new RegExp(`^Sink forward could not deliver a batch of \\d+ records from journal and will send it again in \\d+ ms: forward server ${escape(name)} refused the handshake: shared_key mismatch\\.$`);
      await waitFor("the ERROR", () => agent.entries().some((e) => e.level === "error" && expected.test(e.msg)), 20_000);
      expect(await agent.stop()).toBe(0);
      const mentions = agent.entries().filter((e) => e.msg.includes("shared_key mismatch"));
      expect(mentions.length).toBeGreaterThanOrEqual(2);
      for (const e of mentions) expect(e.msg.split("shared_key mismatch").length).toBe(2);
      expect(mentions.find((e) => e.level === "warn")?.msg).toBe(
        `Forward server ${name} is marked down (refused the handshake: shared_key mismatch); batches wait until it answers again, and it is probed again with backoff.`,
      );
      const sink = forwardSinkConfig.parse({ type: "forward", inputs: ["journal"], servers: [{ host: "127.0.0.1", port: server.port }], tag: "t", shared_key: "wrong" });
      expect(await probeConfig({ sources: {}, sinks: { fwd: sink } } as unknown as Config)).toEqual([
        { ok: false, refused: true, line: `sinks.fwd: server ${name}: REFUSED (refused the handshake: shared_key mismatch)` },
      ]);
    });
  }, 60_000);
});

describe("texts that fit the configuration", () => {
  test("one server down: the reason, once, and no 'other servers' nor a retry time of 0 ms; two servers down: both reasons", async () => {
    const a = await startForwardServer();
    const b = await startForwardServer();
    await a.down();
    await b.down();
    const dir = caseDir();
    const one = inProcess(dir, [{ port: a.port }], 60_000);
    const two = inProcess(caseDir(), [{ port: a.port }, { port: b.port }], 60_000);
    try {
      const refused = (port: number) => `cannot connect to forward server 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`;
      const attempt = async (sink: ForwardSink) => {
        const result = await sink.send(new Delivery(batchOf(1), 0, new AbortController().signal));
        expect(result.status === "failed" && result.error.retryable).toBe(true);
        return describeError((result as { error: unknown }).error);
      };
      // The first attempt finds the server down; the second is told why it still is, not when it is probed.
      expect(await attempt(one.sink)).toBe(refused(a.port));
      expect(await attempt(one.sink)).toBe(refused(a.port));
      expect(one.entries().map((e) => `${e.level} ${e.msg}`)).toEqual([
        `warn Forward server 127.0.0.1:${a.port} is marked down (connect ECONNREFUSED 127.0.0.1:${a.port}); batches wait until it answers again, and it is probed again with backoff.`,
      ]);
      await attempt(two.sink);
      await attempt(two.sink);
      const both = await attempt(two.sink);
      expect(both).toBe(`every forward server is down: ${refused(a.port)}; ${refused(b.port)}`);
      const warns = two.entries().map((e) => e.msg);
      expect(warns).toHaveLength(2);
      const first = warns[0]!.includes(`${a.port} is marked down`) ? [a.port, b.port] : [b.port, a.port];
      expect(warns).toEqual([
        `Forward server 127.0.0.1:${first[0]} is marked down (connect ECONNREFUSED 127.0.0.1:${first[0]}); its chunks go to 127.0.0.1:${first[1]} while it is probed again.`,
        `Forward server 127.0.0.1:${first[1]} is marked down (connect ECONNREFUSED 127.0.0.1:${first[1]}); no forward server is up: batches wait until one answers again, and each is probed again with backoff.`,
      ]);
    } finally {
      await one.stop();
      await two.stop();
      await a.stop();
      await b.stop();
    }
  }, 30_000);
});

describe("a server down, then back", () => {
  test("the waiting batch goes as soon as the sink sees the server again, not after the driver's backoff", async () => {
    const server = await startForwardServer();
    await server.down();
    // Every retry of the driver waits 30–60 s (equal jitter of 60 s): a delivery within seconds did not wait for it.
    const agent = inProcess(caseDir(), [{ port: server.port }], 60_000);
    try {
      let delivered = false;
      agent.driver.enqueue(batchOf(5, () => (delivered = true)));
      await waitFor("the failed attempt", () => agent.metrics.read("nagare_sink_retries_total", { sink: "fwd" }) === 1);
      await server.up();
      await server.waitFor(() => server.events.length >= 5, 15_000);
      await waitFor("the batch settled", () => delivered);
      const entries = agent.entries();
      const failed = entries.findIndex((e) => e.level === "error" && /will send it again in \d+ ms/.test(e.msg));
      const back = entries.findIndex((e) => e.msg === `Forward server 127.0.0.1:${server.port} is reachable again; batches return to it.`);
      const delivers = entries.findIndex((e) => e.msg === "Sink fwd delivers again after 1 failed attempts.");
      expect(failed).toBeGreaterThanOrEqual(0);
      expect(back).toBeGreaterThan(failed);
      expect(delivers).toBeGreaterThan(back);
      const delay = Number(/will send it again in (\d+) ms/.exec(entries[failed]!.msg)![1]);
      expect(delay).toBeGreaterThanOrEqual(30_000);
      expect(Date.parse(entries[delivers]!.ts) - Date.parse(entries[failed]!.ts)).toBeLessThan(delay);
      expect(server.events.map((e) => Number(e.record.SEQ))).toEqual([1, 2, 3, 4, 5]);
    } finally {
      await agent.stop();
      await server.stop();
    }
  }, 30_000);
});

describe("TLS close", () => {
  const alertsReceived = (output: string) =>
    output
      .split("\n")
      .filter((l) => /^<<< .*Alert/.test(l) || /unexpected eof/i.test(l))
      .map((l) => l.replace(/TLS [\d.]+/, "TLS"));

  test("the agent, stopping, ends its TLS connection with close_notify", async () => {
    const certs = await makeTestCertificates();
    const witness = await startTlsWitness(certs);
    try {
      const dir = caseDir();
      const journal = await journalOf(dir, 3);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: witness.port }], extra: { tls: { ca: certs.caPath }, ack_timeout: "30s" }, shutdownTimeout: "1s" }));
      // s_server acks nothing: the chunk is written and waits; once the server read all of it, the agent stops.
      await witness.waitFor((o) => o.includes("seq=3"), 20_000);
      expect(await agent.stop()).toBe(0);
      await witness.waitFor((o) => /close_notify|unexpected eof/i.test(o));
      expect(alertsReceived(witness.output())).toEqual(["<<< TLS, Alert [length 0002], warning close_notify"]);
    } finally {
      await witness.stop();
      rmSync(certs.dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("the sink's close() ends its TLS connection with close_notify", async () => {
    const certs = await makeTestCertificates();
    const witness = await startTlsWitness(certs);
    const agent = inProcess(caseDir(), [{ port: witness.port }], 60_000, { tls: { ca: certs.caPath } });
    try {
      const aborted = new AbortController();
      const sent = agent.sink.send(new Delivery(batchOf(3), 0, aborted.signal));
      // s_server acks nothing: the chunk is written and waits; once the server read it, the sink is closed.
      await witness.waitFor((o) => o.includes("entry 3"));
      aborted.abort();
      const stopped = await sent;
      expect(stopped.status === "failed" && stopped.error.retryable).toBe(true);
      await agent.sink.close();
      await witness.waitFor((o) => /close_notify|unexpected eof/i.test(o));
      expect(alertsReceived(witness.output())).toEqual(["<<< TLS, Alert [length 0002], warning close_notify"]);
    } finally {
      await agent.stop();
      await witness.stop();
      rmSync(certs.dir, { recursive: true, force: true });
    }
  }, 30_000);
});
