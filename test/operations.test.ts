/**
 * Operating nagare: /metrics in the Prometheus format (checked by promtool) with counters that add up,
 * /health turning 503 within max_stall of a sink outage and back to 200, reloads over SIGHUP and POST /reload
 * (valid ones applied without loss, invalid ones refused while shipping goes on, 50 reloads under load).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, startGatewayd, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, metricValue, postReload, readJsonLines, runCli, RunningAgent } from "./support/agent.ts";
import { caseDirs, coverage, range, seqsOf, writeConfig } from "./support/config.ts";
import { consumeAll, startMockCluster } from "./support/kafka.ts";
import { writeKafkaConfig } from "./support/kafka-config.ts";
import { recordMemory } from "../src/sources/journald/source.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

describe("/metrics", () => {
  test("passes promtool check metrics, and records read = acknowledged + in flight", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 3000));
    const agent = new RunningAgent(writeConfig({ dir, source: { directory: journal, start_at: "head" }, api: "127.0.0.1:0" }));
    const api = await apiOf(agent);
    // A line is in the file before its batch is acknowledged: wait for the acknowledgement itself, then check
    // that the other counters agree with it in the same scrape.
    const text = (await waitFor("3000 records acknowledged", async () => {
      const scraped = await (await fetch(`${api}/metrics`)).text();
      return metricValue(scraped, "nagare_sink_acknowledged_records_total", 'sink="out"') >= 3000 ? scraped : undefined;
    }, 20_000))!;
    expect(readJsonLines(join(dir, "out.jsonl")).length).toBe(3000);
    const promtool = Bun.spawn(["promtool", "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(promtool.stdout).text(), new Response(promtool.stderr).text(), promtool.exited]);
    expect(out + err).toBe("");
    expect(code).toBe(0);
    const read = metricValue(text, "nagare_source_read_records_total", 'source="journal"');
    const acked = metricValue(text, "nagare_sink_acknowledged_records_total", 'sink="out"');
    const outstanding = metricValue(text, "nagare_source_outstanding_batches", 'source="journal"');
    expect(read).toBe(3000);
    expect(acked).toBe(3000);
    expect(outstanding).toBe(0);
    for (const name of ["nagare_buffer_used_bytes", "nagare_buffer_limit_bytes", "nagare_buffer_paused", "nagare_buffer_paused_seconds_total", "nagare_sink_ack_latency_seconds_count", "nagare_source_checkpoint_age_seconds", "nagare_journal_gaps_total", "process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"]) {
      expect(text).toMatch(new RegExp(`^${name}[{ ]`, "m"));
    }
    expect(metricValue(text, "nagare_sink_ack_latency_seconds_count", 'sink="out"')).toBeGreaterThan(0);
    expect(await agent.stop()).toBe(0);
  });
});

describe("/health", () => {
  test("turns 503 within max_stall of a broker outage, naming the sink and why, and 200 after recovery", async () => {
    const cluster = await startMockCluster({ brokers: 1, topics: [{ name: "logs", partitions: 1 }] });
    try {
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 100));
      const config = writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "logs", top: { api: { address: "127.0.0.1:0" }, health: { max_stall: "2s" } } });
      const live = new RunningAgent(config);
      const api = await apiOf(live);
      await waitFor("100 messages", async () => (await consumeAll(cluster.bootstrap, "logs")).length >= 100, 30_000);
      expect((await fetch(`${api}/health`)).status).toBe(200);
      await cluster.command("down 1");
      const downAt = performance.now();
      await writeJournal(journal, sequenceEntries(101, 50));
      const unhealthy = await waitFor("503", async () => {
        const r = await fetch(`${api}/health`);
        return r.status === 503 ? ((await r.json()) as { status: string; sinks: { sink: string; reason?: string }[] }) : undefined;
      }, 20_000);
      expect(performance.now() - downAt).toBeLessThan(2000 + 5000);
      expect(unhealthy!.status).toBe("unhealthy");
      expect(unhealthy!.sinks[0]!.sink).toBe("kafka");
      expect(unhealthy!.sinks[0]!.reason).toMatch(/nothing delivered for \d+ s while records wait: Kafka: connecting to the brokers .* failed \(CONNECTION_REFUSED: connect ECONNREFUSED/);
      await cluster.command("up 1");
      await waitFor("200 again", async () => (await fetch(`${api}/health`)).status === 200, 30_000);
      // 200 needs only one delivery since the outage; batches still waiting for their retry may come later.
      const seqs = async () => (await consumeAll(cluster.bootstrap, "logs")).map((m) => Number(JSON.parse(m.value!).SEQ));
      await waitFor("all 150 records", async () => coverage(await seqs(), 1, 150).missing.length === 0, 30_000);
      expect(await live.stop()).toBe(0);
      expect(coverage(await seqs(), 1, 150).missing).toEqual([]);
    } finally {
      await cluster.stop();
    }
  }, 90_000);
});

describe("reload", () => {
  test("a valid change (a sink added, a topic changed) is applied in place without loss", async () => {
    const cluster = await startMockCluster({ brokers: 1, topics: [{ name: "first", partitions: 1 }, { name: "second", partitions: 1 }] });
    try {
      const dir = caseDir();
      const journal = join(dir, "journal");
      await writeJournal(journal, sequenceEntries(1, 100));
      const config = writeKafkaConfig({ dir, journal, bootstrap: cluster.bootstrap, topic: "first" });
      const agent = new RunningAgent(config);
      await waitFor("100 in first", async () => (await consumeAll(cluster.bootstrap, "first")).length >= 100, 30_000);
      const parsed = JSON.parse(await Bun.file(config).text());
      parsed.sinks.kafka.topic = "second";
      parsed.sinks.archive = { type: "file", inputs: ["journal"], path: join(dir, "archive.jsonl") };
      writeFileSync(config, JSON.stringify(parsed));
      agent.kill("SIGHUP");
      await waitFor("the reload", () => agent.entries().some((e) => /^Reload applied in place; started anew: kafka, archive/.test(e.msg)), 20_000);
      // The unchanged source kept its reader: it started reading once.
      expect(agent.entries().filter((e) => /reads the journal from/.test(e.msg)).length).toBe(1);
      await writeJournal(journal, sequenceEntries(101, 100));
      await waitFor("100 in second", async () => (await consumeAll(cluster.bootstrap, "second")).length >= 100, 30_000);
      await waitFor("100 in the archive", () => readJsonLines(join(dir, "archive.jsonl")).length >= 100, 30_000);
      expect(await agent.stop()).toBe(0);
      const seqOf = (m: { value: string | null }) => Number(JSON.parse(m.value!).SEQ);
      expect((await consumeAll(cluster.bootstrap, "first")).map(seqOf)).toEqual(range(1, 100));
      expect((await consumeAll(cluster.bootstrap, "second")).map(seqOf)).toEqual(range(101, 100));
      expect(seqsOf(readJsonLines(join(dir, "archive.jsonl")))).toEqual(range(101, 100));
    } finally {
      await cluster.stop();
    }
  }, 90_000);

  test("invalid configs (typo, bad YAML, missing TLS file) are refused over POST /reload while shipping goes on", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 50));
    const config = writeConfig({ dir, source: { directory: journal, start_at: "head" }, api: "127.0.0.1:0" });
    const good = await Bun.file(config).text();
    const agent = new RunningAgent(config);
    const api = await apiOf(agent);
    const out = join(dir, "out.jsonl");
    await waitFor("50 records", () => readJsonLines(out).length >= 50, 20_000);
    const broken: [string, RegExp][] = [
      [good.replace('"start_at"', '"strat_at"'), /sources\.journal\.strat_at: unknown key/],
      ["sources: [unclosed\n", /invalid JSON/],
      [JSON.stringify({ ...JSON.parse(good), sinks: { ...JSON.parse(good).sinks, k: { type: "kafka", inputs: ["journal"], brokers: ["127.0.0.1:1"], topic: "t", tls: { ca: join(dir, "missing-ca.pem") } } } }), /missing-ca\.pem/],
    ];
    let next = 51;
    for (const [text, problem] of broken) {
      writeFileSync(config, text);
      const r = await postReload(agent);
      expect(r.status).toBe(422);
      const body = (await r.json()) as { applied: boolean; problems: string[] };
      expect(body.applied).toBe(false);
      expect(body.problems.join("\n")).toMatch(problem);
      await writeJournal(journal, sequenceEntries(next, 10));
      next += 10;
      await waitFor(`${next - 1} records`, () => readJsonLines(out).length >= next - 1, 20_000);
    }
    writeFileSync(config, good);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(out))).toEqual(range(1, next - 1));
    expect(agent.entries().filter((e) => e.level === "error" && /not applied|cannot be applied/.test(e.msg)).length).toBe(3);
  }, 60_000);

  test("50 reloads under load lose nothing", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 1000));
    const config = writeConfig({ dir, source: { directory: journal, start_at: "head" }, api: "127.0.0.1:0" });
    const base = JSON.parse(await Bun.file(config).text());
    const agent = new RunningAgent(config);
    const api = await apiOf(agent);
    let next = 1001;
    for (let i = 0; i < 50; i++) {
      // Alternate a sink setting so every reload rebuilds the sink while the source keeps reading.
      writeFileSync(config, JSON.stringify({ ...base, sinks: { out: { ...base.sinks.out, fsync: i % 2 === 0 } } }));
      const [reload] = await Promise.all([postReload(agent), writeJournal(journal, sequenceEntries(next, 200))]);
      expect(reload.status).toBe(200);
      next += 200;
    }
    const total = next - 1;
    await waitFor(`${total} records`, () => coverage(seqsOf(readJsonLines(join(dir, "out.jsonl"))), 1, total).missing.length === 0, 60_000);
    expect(await agent.stop()).toBe(0);
    const { missing, duplicates } = coverage(seqsOf(readJsonLines(join(dir, "out.jsonl"))), 1, total);
    console.log(`50 reloads under load: ${total} entries, ${missing.length} missing, ${duplicates} duplicates`);
    expect(missing).toEqual([]);
    // A reload that catches a batch mid-swap restarts that source from its checkpoint: duplicates stay within
    // the in-flight window (here, the 8 MiB buffer: about 3,100 records).
    expect(duplicates).toBeLessThanOrEqual(Math.ceil((8 * 1024 * 1024) / recordMemory(735, 21)));
    expect(agent.entries().filter((e) => /^Reload applied in place/.test(e.msg)).length).toBe(50);
  }, 180_000);
});

describe("validate --connect", () => {
  test("probes every broker and gateway, one line each; an unreachable one exits 69 (the environment, not the config)", async () => {
    const cluster = await startMockCluster({ brokers: 2 });
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 5));
    const gateway = await startGatewayd(journal);
    try {
      const config = (brokers: string[]) => {
        const path = join(dir, `connect-${brokers.length}.json`);
        writeFileSync(path, JSON.stringify({ api: false, sources: { gw: { type: "journald", url: gateway.url } }, sinks: { kafka: { type: "kafka", inputs: ["gw"], brokers, topic: "t" } } }));
        return path;
      };
      const ok = await runCli(["validate", "--connect", "-c", config(cluster.brokers)]);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain(`sources.gw: gateway ${gateway.url} reachable (HTTP 200)`);
      for (const broker of cluster.brokers) expect(ok.stdout).toMatch(new RegExp(`sinks\\.kafka: broker ${broker}: reachable \\(TCP connect in \\d+ ms\\)`));
      await cluster.command("down 2");
      const bad = await runCli(["validate", "--connect", "-c", config([...cluster.brokers, "127.0.0.1:1"])]);
      expect(bad.code).toBe(69);
      expect(bad.stderr).toContain(`sinks.kafka: broker ${cluster.brokers[1]}: UNREACHABLE (ECONNREFUSED)`);
      expect(bad.stderr).toContain("sinks.kafka: broker 127.0.0.1:1: UNREACHABLE (ECONNREFUSED)");
      expect(bad.stdout).toContain(`sinks.kafka: broker ${cluster.brokers[0]}: reachable`);
    } finally {
      await gateway.stop();
      await cluster.stop();
    }
  }, 60_000);
});
