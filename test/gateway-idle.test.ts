/**
 * The gateway stream's idle timeout. A connection to systemd-journal-gatewayd whose body stalls (a hung proxy, a
 * NAT that dropped the flow silently) used to hang the source for good: only the response headers were under a
 * timeout. Now the source reconnects from its last entry after `idle_timeout` without a byte. gatewayd itself
 * sends nothing while the journal is quiet, so there the reconnect is routine: quiet, and exact.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { exportText, sequenceEntries, startGatewayd, writeJournal, type ExportField } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, metricValue, readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, range, seqsOf, writeConfig } from "./support/config.ts";
import { GatewayReader } from "../src/sources/journald/gateway.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

const EXPORT_MIME = "application/vnd.fdo.journal";

/**
 * A gateway that follows gatewayd's rules for `GET /entries?follow` (no Range: from the head; `Range:
 * entries=<cursor>`: from that cursor's entry; an unknown cursor: 400) over `n` entries with cursors c1..cn.
 * The first connection sends entries 1..stallAfter and half of the next one, then stalls, the connection open;
 * later ones send everything from the cursor, then stay open with nothing more (a quiet journal).
 */
function stallingGateway(n: number, stallAfter: number) {
  const entries = range(1, n).map((seq) => exportText([[["__CURSOR", `c${seq}`], ["SEQ", String(seq)], ["MESSAGE", `entry ${seq} ${"x".repeat(200)}`]] as ExportField[]]));
  const ranges: (string | null)[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0, // Bun.serve would close a silent response after 10 s: the stall must last
    fetch(request) {
      const url = new URL(request.url);
      if (url.pathname !== "/entries" || !url.searchParams.has("follow")) return new Response("not found", { status: 404 });
      const range = request.headers.get("range");
      ranges.push(range);
      let from = 0;
      if (range !== null) {
        const index = /^entries=c(\d+)$/.exec(range)?.[1];
        if (index === undefined || Number(index) < 1 || Number(index) > n) return new Response(`unknown cursor in ${range}`, { status: 400 });
        from = Number(index) - 1;
      }
      const parts = ranges.length === 1 ? [...entries.slice(0, stallAfter), entries[stallAfter]!.subarray(0, 100)] : entries.slice(from);
      const body = Buffer.concat(parts);
      return new Response(new ReadableStream({ start: (controller) => controller.enqueue(body) }), { headers: { "Content-Type": EXPORT_MIME } });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, ranges, stop: () => server.stop(true) };
}

async function metric(api: string, name: string): Promise<number> {
  return metricValue(await (await fetch(`${api}/metrics`)).text(), name, 'source="journal"');
}

describe("gateway answers that stall", () => {
  test("a body that stalls is given up after idle_timeout; the source resumes from its last cursor: every entry once, in order", async () => {
    const gateway = stallingGateway(40, 15);
    try {
      const dir = caseDir();
      const out = join(dir, "out.jsonl");
      const config = writeConfig({ dir, source: { url: gateway.url, start_at: "head", idle_timeout: "1s" }, api: "127.0.0.1:0" });
      const agent = new RunningAgent(config);
      const api = await apiOf(agent);
      await waitFor("all 40 entries shipped", () => readJsonLines(out).length >= 40, 30_000);
      expect(await metric(api, "nagare_journal_idle_reconnects_total")).toBeGreaterThanOrEqual(1);
      expect(await metric(api, "nagare_journal_reader_restarts_total")).toBe(0);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 40));
      // The reconnect asked for the last entry the agent read (gatewayd sends it again; the source drops it).
      expect(gateway.ranges.slice(0, 2)).toEqual([null, "entries=c15"]);
      expect(gateway.ranges.slice(2).every((r) => r === "entries=c40")).toBe(true);
      expect(agent.entries().filter((e) => e.level === "warn" || e.level === "error")).toEqual([]);
    } finally {
      gateway.stop();
    }
  });

  test("real gatewayd on a quiet journal: the reconnects are quiet and lose or repeat nothing", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 10));
    const gateway = await startGatewayd(journal);
    try {
      const out = join(dir, "out.jsonl");
      const config = writeConfig({ dir, source: { url: gateway.url, start_at: "head", idle_timeout: "1s" }, api: "127.0.0.1:0" });
      const agent = new RunningAgent(config);
      const api = await apiOf(agent);
      await waitFor("two idle reconnects", async () => (await metric(api, "nagare_journal_idle_reconnects_total")) >= 2, 30_000);
      await writeJournal(journal, sequenceEntries(11, 10));
      await waitFor("all 20 entries shipped", () => readJsonLines(out).length >= 20, 30_000);
      expect(await metric(api, "nagare_journal_reader_restarts_total")).toBe(0);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(1, 20));
      expect(agent.entries().filter((e) => e.level === "warn" || e.level === "error")).toEqual([]);
    } finally {
      await gateway.stop();
    }
  });

  test("time the source spends paused (the buffer full, nothing read) does not count as silence", async () => {
    const encoder = new TextEncoder();
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch: () =>
        new Response(
          new ReadableStream({
            async start(controller) {
              controller.enqueue(encoder.encode("SEQ=1\n\n"));
              await Bun.sleep(500);
              controller.enqueue(encoder.encode("SEQ=2\n\n"));
            },
          }),
        ),
    });
    const stop = new AbortController();
    const reader = await GatewayReader.open({ url: `http://127.0.0.1:${server.port}`, cursor: undefined, timeoutMs: 5000, idleTimeoutMs: 1000, signal: stop.signal });
    try {
      expect(new TextDecoder().decode((await reader.read())!)).toBe("SEQ=1\n\n");
      // Paused three idle timeouts long while the second entry arrived: it is still read, not given up on.
      await Bun.sleep(3000);
      expect(new TextDecoder().decode((await reader.read())!)).toBe("SEQ=2\n\n");
      expect(reader.idle).toBe(false);
      // Waiting for bytes that do not come is silence.
      expect(await reader.read()).toBeNull();
      expect(reader.idle).toBe(true);
      expect(reader.failure).toBe("the gateway sent nothing for 1000 ms");
    } finally {
      await reader.close();
      server.stop(true);
    }
  });

  test("a tail probe (start_at: tail) whose answer stalls fails after connect_timeout and is tried again", async () => {
    const entries = range(1, 15).map((seq) => exportText([[["__CURSOR", `c${seq}`], ["SEQ", String(seq)], ["MESSAGE", `entry ${seq}`]] as ExportField[]]));
    const requests: string[] = [];
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch(request) {
        const follow = new URL(request.url).searchParams.has("follow");
        const range = request.headers.get("range") ?? "";
        requests.push(`${follow ? "follow " : ""}${range}`);
        // The tail probe finds entries 9 and 10 the newest; the follow stream from c10 brings 10..15.
        let parts = follow && range === "entries=c10" ? entries.slice(9) : range === "entries=:-1:2" ? entries.slice(8, 10) : undefined;
        if (parts === undefined) return new Response(`unexpected ${range}`, { status: 400 });
        const stall = !follow && requests.length === 1;
        if (stall) parts = [entries[8]!.subarray(0, 50)];
        const body = Buffer.concat(parts);
        // A stalled answer and the follow stream stay open; the complete tail answer ends.
        const open = stall || follow;
        return new Response(new ReadableStream({ start: (controller) => (controller.enqueue(body), open ? undefined : controller.close()) }));
      },
    });
    try {
      const dir = caseDir();
      const out = join(dir, "out.jsonl");
      const config = writeConfig({ dir, source: { url: `http://127.0.0.1:${server.port}`, start_at: "tail", connect_timeout: "1s" } });
      const agent = new RunningAgent(config);
      await waitFor("entries 11..15 shipped", () => readJsonLines(out).length >= 5, 30_000);
      expect(await agent.stop()).toBe(0);
      expect(seqsOf(readJsonLines(out))).toEqual(range(11, 5));
      expect(requests.slice(0, 3)).toEqual(["entries=:-1:2", "entries=:-1:2", "follow entries=c10"]);
      expect(agent.entries().some((e) => e.level === "error" && /newest entry .* did not end within 1000 ms/.test(e.msg))).toBe(true);
    } finally {
      server.stop(true);
    }
  });
});
