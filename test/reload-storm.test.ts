/**
 * Reloads never duplicate and never escape the memory bound: with the only sink down and the buffer full, 30
 * reloads (unchanged, the sink changed, the source changed) leave the queued batches, the buffer and RSS flat,
 * and once the sink is back every record arrives exactly once. A burst of reload requests applies at most twice.
 * POST /reload needs the token from data_dir and a loopback Host header.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { apiOf, metricValue, postReload, reloadAuthorization, RunningAgent } from "./support/agent.ts";
import { caseDirs, coverage } from "./support/config.ts";
import { journalOf, withServer, writeForwardConfig } from "./support/forward-config.ts";
import type { ForwardServer } from "./support/forward-server.ts";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

const RECORDS = 12_000;
const MiB = 1024 * 1024;

async function metrics(api: string): Promise<string> {
  return (await fetch(`${api}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
}

function snapshot(text: string) {
  return {
    queued: metricValue(text, "nagare_sink_queued_batches", 'sink="forward"'),
    used: metricValue(text, "nagare_buffer_used_bytes", ""),
    limit: metricValue(text, "nagare_buffer_limit_bytes", ""),
    paused: metricValue(text, "nagare_buffer_paused", ""),
    rss: metricValue(text, "process_resident_memory_bytes", ""),
    reloads: metricValue(text, "nagare_config_reloads_total", ""),
  };
}

/** The config of reload `i`: unchanged, the forward sink changed, or the journald source changed. */
function variant(dir: string, journal: string, server: ForwardServer, i: number): void {
  const kind = i % 3;
  writeForwardConfig({
    dir,
    journal,
    servers: [{ port: server.port }],
    maxBytes: "2MiB",
    batchMaxBytes: "128KiB",
    extra: { ack_timeout: kind === 1 && i % 2 === 1 ? "3s" : "2s" },
    sourceExtra: { restart_backoff_max: kind === 2 && i % 2 === 0 ? "20s" : "30s" },
    api: "127.0.0.1:0",
  });
}

describe("a reload storm during an outage", () => {
  test("30 reloads with the only sink down and the buffer full: queues, buffer and RSS stay flat; nothing lost or duplicated", async () => {
    const dir = caseDir();
    const journal = await journalOf(dir, RECORDS);
    await withServer({}, async (server) => {
      await server.down();
      variant(dir, journal, server, 0);
      const agent = new RunningAgent(join(dir, "nagare.json"));
      const api = await apiOf(agent);
      await waitFor("the buffer to fill", async () => snapshot(await metrics(api)).paused === 1, 60_000);
      const before = snapshot(await metrics(api));
      let worst = before;
      const rss: number[] = [];
      for (let i = 1; i <= 30; i++) {
        variant(dir, journal, server, i);
        const r = await postReload(agent, AbortSignal.timeout(60_000));
        expect(r.status).toBe(200);
        // A changed source reads again what it had read: wait until the buffer is full again before measuring.
        await waitFor("the buffer to fill again", async () => snapshot(await metrics(api)).paused === 1, 60_000);
        const now = snapshot(await metrics(api));
        if (now.queued > worst.queued) worst = { ...worst, queued: now.queued };
        if (now.used > worst.used) worst = { ...worst, used: now.used };
        rss.push(Math.round(now.rss / MiB));
      }
      console.log(`RSS per reload (MiB): ${rss.join(" ")}`);
      const after = snapshot(await metrics(api));
      console.log(`reload storm: queued batches ${before.queued} → max ${worst.queued}; buffer used ${before.used} → max ${worst.used} of ${before.limit}; RSS ${Math.round(before.rss / MiB)} → ${Math.round(after.rss / MiB)} MiB`);
      expect(after.reloads).toBe(30);
      // The buffer (records, and what the sink encoded of the batches it tried) bounds what is queued: it may pass
      // max_bytes by what is read before reading pauses and by a few encoded batches, whichever reload came last,
      // but nothing adds up from reload to reload (before the fix, 30 reloads took 9 queued batches to 279).
      expect(worst.used).toBeLessThanOrEqual(2 * before.limit);
      expect(worst.queued).toBeLessThanOrEqual(2 * before.queued);
      expect(after.rss - before.rss).toBeLessThan(32 * MiB);

      await server.up();
      await server.waitFor(() => coverage(server.events.map((e) => Number(e.record.SEQ)), 1, RECORDS).missing.length === 0, 120_000);
      expect(await agent.stop()).toBe(0);
      const { missing, duplicates } = coverage(server.events.map((e) => Number(e.record.SEQ)), 1, RECORDS);
      expect(missing).toEqual([]);
      // Nothing reached the server during the outage, so nothing can have been delivered twice.
      expect(duplicates).toBe(0);
    });
  }, 300_000);

  test("a burst of 10 reload requests during a slow reload is applied twice; a removed sink drains, then lets go", async () => {
    const dir = caseDir();
    const journal = await journalOf(dir, 100);
    await withServer({}, async (up) => {
      await withServer({}, async (down) => {
        await down.down();
        const config = (withDown: boolean) =>
          writeForwardConfig({
            dir,
            journal,
            servers: [{ port: up.port }],
            shutdownTimeout: "5s",
            api: "127.0.0.1:0",
            top: { log: { level: "debug" } },
            moreSinks: withDown ? { second: { type: "forward", inputs: ["journal"], servers: [{ host: "127.0.0.1", port: down.port }], tag: "t", connect_timeout: "1s" } } : {},
          });
        config(true);
        const agent = new RunningAgent(join(dir, "nagare.json"));
        const api = await apiOf(agent);
        await up.waitFor(() => up.events.length === 100, 30_000);
        await waitFor("records waiting for the down sink", async () => metricValue(await metrics(api), "nagare_sink_queued_batches", 'sink="second"') > 0, 30_000);
        config(false);
        // The first request starts a reload that waits shutdown_timeout (5 s) for the removed sink; the other
        // nine come meanwhile and share one more reload.
        const first = postReload(agent, AbortSignal.timeout(60_000));
        await waitFor("the first reload to start", () => agent.entries().some((e) => /^A reload starts/.test(e.msg)), 10_000);
        const rest = await Promise.all(Array.from({ length: 9 }, () => postReload(agent, AbortSignal.timeout(60_000))));
        expect([(await first).status, ...rest.map((r) => r.status)]).toEqual(Array(10).fill(200));
        expect(snapshot(await metrics(api)).reloads).toBe(2);
        const dropped = agent.entries().filter((e) => /^Sink second was removed by the reload with \d+ record\(s\) it had not delivered within shutdown_timeout/.test(e.msg));
        expect(dropped.map((e) => e.level)).toEqual(["warn"]);
        // The kept sink got everything once, and the source's position moved on: nothing waits for the gone sink.
        await writeJournal(journal, sequenceEntries(101, 10));
        await up.waitFor(() => up.events.length === 110, 30_000);
        expect(await agent.stop()).toBe(0);
        expect(coverage(up.events.map((e) => Number(e.record.SEQ)), 1, 110)).toEqual({ missing: [], duplicates: 0 });
      });
    });
  }, 120_000);
});

describe("who may reload over the API", () => {
  test("POST /reload needs the token from data_dir (0600); a non-loopback Host is refused; reading needs no token", async () => {
    const dir = caseDir();
    const journal = await journalOf(dir, 10);
    await withServer({}, async (server) => {
      variant(dir, journal, server, 0);
      const agent = new RunningAgent(join(dir, "nagare.json"));
      const api = await apiOf(agent);
      const tokenFile = join(dir, "data", "api.token");
      expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
      const listening = agent.entries().find((e) => /The API listens on/.test(e.msg))!.msg;
      expect(listening).toContain(tokenFile);

      expect((await fetch(`${api}/reload`, { method: "POST" })).status).toBe(401);
      expect((await fetch(`${api}/reload`, { method: "POST", headers: { authorization: `Bearer ${"0".repeat(64)}` } })).status).toBe(401);
      const rebinding = await fetch(`${api}/metrics`, { headers: { host: "attacker.example:24280" } });
      expect(rebinding.status).toBe(403);
      const forged = await fetch(`${api}/reload`, { method: "POST", headers: { ...reloadAuthorization(listening), host: "attacker.example" } });
      expect(forged.status).toBe(403);
      expect((await fetch(`${api}/health`)).status).toBe(200);
      expect(snapshot(await metrics(api)).reloads).toBe(0);
      expect((await postReload(agent)).status).toBe(200);
      expect(snapshot(await metrics(api)).reloads).toBe(1);

      // The token survives a restart (a script that read it keeps working); a file others can read is replaced.
      const token = reloadAuthorization(listening).authorization;
      expect(await agent.stop()).toBe(0);
      const again = new RunningAgent(join(dir, "nagare.json"));
      await apiOf(again);
      expect((await postReload(again)).status).toBe(200);
      expect(reloadAuthorization(again.entries().find((e) => /The API listens on/.test(e.msg))!.msg).authorization).toBe(token);
      expect(await again.stop()).toBe(0);
      writeFileSync(tokenFile, `${"a".repeat(64)}\n`);
      chmodSync(tokenFile, 0o644);
      const third = new RunningAgent(join(dir, "nagare.json"));
      await apiOf(third);
      expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
      expect(reloadAuthorization(third.entries().find((e) => /The API listens on/.test(e.msg))!.msg).authorization).not.toBe(`Bearer ${"a".repeat(64)}`);
      expect(await third.stop()).toBe(0);
    });
  }, 120_000);
});
