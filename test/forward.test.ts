/**
 * journal → forward end to end: real journal files, the agent process, and the spec-following forward test
 * server over TCP (and TLS), misbehaving on demand.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { RunningAgent } from "./support/agent.ts";
import { caseDirs, coverage, range } from "./support/config.ts";
import { makeTestCertificates, startForwardServer, type ForwardServer, type ForwardServerOptions } from "./support/forward-server.ts";
import { journalOf, withServer, writeForwardConfig } from "./support/forward-config.ts";
import { recordMemory } from "../src/sources/journald/source.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);
const seqs = (server: ForwardServer) => server.events.map((e) => Number(e.record.SEQ));

describe("journal to forward", () => {
  test("every entry arrives in order as PackedForward with chunk acks, its tag, EventTime and id", async () => {
    await withServer({}, async (server) => {
      const dir = caseDir();
      const journal = await journalOf(dir, 3000);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], extra: { id_field: true } }));
      await server.waitFor(() => server.events.length >= 3000, 30_000);
      expect(await agent.stop()).toBe(0);
      expect(seqs(server)).toEqual(range(1, 3000));
      const first = server.events[0]!;
      expect(first.tag).toBe("journal.nagare-test");
      expect(first.mode).toBe("PackedForward");
      expect(typeof first.record._nagare_id).toBe("string");
      expect(first.time).toEqual({ sec: Math.floor(Number(first.record.__REALTIME_TIMESTAMP) / 1e6), nsec: (Number(first.record.__REALTIME_TIMESTAMP) % 1e6) * 1000 });
      expect(server.chunks.every((c) => c.acked)).toBe(true);
      expect(server.protocolErrors).toEqual([]);
    });
  }, 60_000);

  test("a server that acks late: several chunks are in flight on the connection at once, and all arrive in order", async () => {
    await withServer({ behaviour: { ackDelayMs: 500 } }, async (server) => {
      const dir = caseDir();
      const journal = await journalOf(dir, 4000);
      // Small batches (128 KiB of buffer each, about 60 entries), so the journal makes dozens of chunks.
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], batchMaxBytes: "128KiB", extra: { max_in_flight: 8 } }));
      await server.waitFor(() => server.chunks.filter((c) => !c.acked).length >= 8, 30_000);
      expect(server.chunks.filter((c) => !c.acked).length).toBeLessThanOrEqual(8);
      expect(server.connections).toBe(1);
      await server.waitFor(() => server.events.length >= 4000, 60_000);
      expect(await agent.stop()).toBe(0);
      expect(seqs(server)).toEqual(range(1, 4000));
    });
  }, 90_000);

  test("gzip sends CompressedPackedForward", async () => {
    await withServer({}, async (server) => {
      const dir = caseDir();
      const journal = await journalOf(dir, 200);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], extra: { compress: "gzip" } }));
      await server.waitFor(() => server.events.length >= 200, 30_000);
      expect(await agent.stop()).toBe(0);
      expect(new Set(server.chunks.map((c) => c.mode))).toEqual(new Set(["CompressedPackedForward"]));
      expect(seqs(server)).toEqual(range(1, 200));
    });
  }, 60_000);
});

describe("handshake", () => {
  test("shared key with user and password is accepted, against Fluentd's and Fluent Bit's handshakes", async () => {
    for (const flavour of ["fluentd", "fluent-bit"] as const) {
      const options = flavour === "fluentd" ? { sharedKey: "s3cret", users: { alice: "pw" }, flavour } : { sharedKey: "s3cret", flavour };
      await withServer(options, async (server) => {
        const dir = caseDir();
        const journal = await journalOf(dir, 100);
        const auth = flavour === "fluentd" ? { username: "alice", password: "pw" } : {};
        const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], extra: { shared_key: "s3cret", self_hostname: "edge-1", ...auth } }));
        await server.waitFor(() => server.events.length >= 100, 30_000);
        expect(await agent.stop()).toBe(0);
        expect(server.handshakes[0]).toMatchObject({ ok: true, clientHostname: "edge-1" });
        expect(seqs(server)).toEqual(range(1, 100));
      });
    }
  }, 60_000);

  const failures: [string, ForwardServerOptions, Record<string, unknown>, RegExp][] = [
    ["a wrong shared key", { sharedKey: "right" }, { shared_key: "wrong" }, /refused the handshake: shared_key mismatch/],
    ["a wrong password", { sharedKey: "k", users: { alice: "pw" } }, { shared_key: "k", username: "alice", password: "nope" }, /refused the handshake: username\/password mismatch/],
    ["a refusal", { sharedKey: "k", behaviour: { refuse: "maintenance window" } }, { shared_key: "k" }, /refused the handshake: maintenance window/],
    ["a forged PONG", { sharedKey: "k", behaviour: { badPong: true } }, { shared_key: "k" }, /wrong PONG digest/],
  ];
  for (const [what, serverOptions, sinkOptions, expected] of failures) {
    const fixable = what === "a refusal" || what === "a forged PONG";
    test(`${what} is a clear ERROR, retried with backoff${fixable ? ", and delivered once the server is fixed" : ""}`, async () => {
      await withServer(serverOptions, async (server) => {
        const dir = caseDir();
        const journal = await journalOf(dir, 20);
        const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], extra: sinkOptions, shutdownTimeout: "1s" }));
        await waitFor("the ERROR", () => agent.entries().some((e) => e.level === "error" && expected.test(e.msg)), 20_000);
        expect(server.events.length).toBe(0);
        expect(server.handshakes.length).toBeGreaterThanOrEqual(1);
        // The server side is fixed: the agent gets through on its own, without a restart.
        server.behaviour.refuse = undefined;
        server.behaviour.badPong = false;
        if (!fixable) {
          expect(await agent.stop()).toBe(0);
          return;
        }
        await server.waitFor(() => server.events.length >= 20, 30_000);
        expect(await agent.stop()).toBe(0);
        expect(seqs(server)).toEqual(range(1, 20));
      });
    }, 60_000);
  }
});

describe("TLS", () => {
  test("with the CA, and with verify off", async () => {
    const certs = await makeTestCertificates();
    for (const tls of [{ ca: certs.caPath }, { verify: false }]) {
      await withServer({ tls: { cert: certs.cert, key: certs.key } }, async (server) => {
        const dir = caseDir();
        const journal = await journalOf(dir, 100);
        const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], extra: { tls } }));
        await server.waitFor(() => server.events.length >= 100, 30_000);
        expect(await agent.stop()).toBe(0);
        expect(seqs(server)).toEqual(range(1, 100));
      });
    }
    rmSync(certs.dir, { recursive: true, force: true });
  }, 60_000);
});

describe("acks and failover", () => {
  test("an ack withheld: the connection is closed and the same chunk id is sent again; nothing is lost", async () => {
    await withServer({ behaviour: { withholdAck: true } }, async (server) => {
      const dir = caseDir();
      const journal = await journalOf(dir, 50);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }], extra: { ack_timeout: "500ms" } }));
      // The 50 entries may make more than one chunk on the first connection: wait for a chunk id seen twice.
      const resent = () => server.chunks.findIndex((c, i) => server.chunks.findIndex((d) => d.id === c.id) < i);
      await server.waitFor(() => resent() >= 0, 20_000);
      const again = server.chunks[resent()]!;
      const first = server.chunks.find((c) => c.id === again.id)!;
      expect(again.connection).not.toBe(first.connection);
      server.behaviour.withholdAck = false;
      await server.waitFor(() => server.chunks.some((c) => c.acked), 20_000);
      expect(await agent.stop()).toBe(0);
      expect(coverage(seqs(server), 1, 50).missing).toEqual([]);
      expect(agent.entries().some((e) => /no ack for chunk/.test(e.msg))).toBe(true);
    });
  }, 60_000);

  test("a wrong ack closes the connection and the chunk is sent again", async () => {
    await withServer({ behaviour: { wrongAck: true } }, async (server) => {
      const dir = caseDir();
      const journal = await journalOf(dir, 30);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: server.port }] }));
      await waitFor("the wrong ack", () => agent.entries().some((e) => /sent an ack for a chunk it was not sent/.test(e.msg)), 20_000);
      server.behaviour.wrongAck = false;
      await waitFor("a correct ack", () => server.chunks.some((c) => c.acked), 20_000);
      expect(await agent.stop()).toBe(0);
      expect(coverage(seqs(server), 1, 30).missing).toEqual([]);
    });
  }, 60_000);

  test("primary down mid-stream: the standby takes over; primary back: failback; nothing is lost", async () => {
    const primary = await startForwardServer();
    const standby = await startForwardServer();
    try {
      const dir = caseDir();
      const journal = await journalOf(dir, 500);
      const agent = new RunningAgent(writeForwardConfig({ dir, journal, servers: [{ port: primary.port }, { port: standby.port, standby: true }] }));
      await primary.waitFor(() => primary.events.length >= 500, 30_000);
      expect(standby.events.length).toBe(0);
      await primary.down();
      await writeJournal(journal, sequenceEntries(501, 500));
      await standby.waitFor(() => standby.events.length >= 500, 30_000);
      await primary.up();
      await waitFor("failback", () => agent.entries().some((e) => /127\.0\.0\.1:\d+ is reachable again; batches return to it/.test(e.msg)), 30_000);
      await writeJournal(journal, sequenceEntries(1001, 500));
      await primary.waitFor(() => primary.events.filter((e) => Number(e.record.SEQ) > 1000).length >= 500, 30_000);
      expect(await agent.stop()).toBe(0);
      const all = [...seqs(primary), ...seqs(standby)];
      expect(coverage(all, 1, 1500).missing).toEqual([]);
      expect(seqs(standby).every((s) => s > 500 && s <= 1000)).toBe(true);
    } finally {
      await primary.stop();
      await standby.stop();
    }
  }, 90_000);

  test("SIGKILL three times mid-stream: nothing lost, duplicates within one buffer per kill", async () => {
    await withServer({}, async (server) => {
      const ENTRIES = 30_000;
      const MAX_BYTES = 2 * 1024 * 1024;
      const dir = caseDir();
      const journal = await journalOf(dir, ENTRIES);
      const config = writeForwardConfig({ dir, journal, servers: [{ port: server.port }], maxBytes: String(MAX_BYTES) });
      for (let kill = 0; kill < 3; kill++) {
        const agent = new RunningAgent(config);
        // At most ENTRIES: the count includes duplicates, and a target beyond what can arrive would never be met.
        const target = Math.min(ENTRIES, server.events.length + 2000 + Math.floor(Math.random() * 4000));
        await server.waitFor(() => server.events.length >= target, 60_000);
        agent.kill("SIGKILL");
        await agent.exited;
      }
      const agent = new RunningAgent(config);
      await server.waitFor(() => coverage(seqs(server), 1, ENTRIES).missing.length === 0, 120_000);
      expect(await agent.stop()).toBe(0);
      const { missing, duplicates } = coverage(seqs(server), 1, ENTRIES);
      const perBuffer = Math.ceil((MAX_BYTES + 512 * 1024) / recordMemory(735, 21));
      console.log(`forward crash test: ${ENTRIES} entries, 3 kills, ${server.events.length} received, ${missing.length} missing, ${duplicates} duplicates (allowed 3 x ${perBuffer})`);
      expect(missing).toEqual([]);
      expect(duplicates).toBeLessThanOrEqual(3 * perBuffer);
    });
  }, 240_000);
});
