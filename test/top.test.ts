/**
 * `nagare top`: the Prometheus text reader, the view's rates and the 80-column screen as units; then the command
 * against a real agent (journal files → a forward test server and a file sink), its numbers checked against the
 * agent's own /metrics, its live mode without a terminal, and its exit statuses when the agent cannot be reached
 * or the config has no API.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import net from "node:net";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, CLI, metricValue, runCli, RunningAgent } from "./support/agent.ts";
import { caseDirs, writeAgentConfig } from "./support/config.ts";
import { journalOf, withServer } from "./support/forward-config.ts";
import { parsePrometheus } from "../src/observe/top/parse.ts";
import { viewOf, type BufferState, type Scrape, type View } from "../src/observe/top/view.ts";
import { count, rate, renderUnreachable, renderView } from "../src/observe/top/render.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

describe("the Prometheus text reader", () => {
  test("reads names, escaped label values, special values and timestamps; leaves out histograms, summaries and odd lines", () => {
    const text = [
      "# HELP nagare_sink_errors_total Failed delivery attempts by error code.",
      "# TYPE nagare_sink_errors_total counter",
      'nagare_sink_errors_total{sink="a \\"quoted\\" one",code="TIMEOUT"} 3',
      'nagare_sink_errors_total{sink="back\\\\slash\\nnewline",code="X",} 4 1700000000000',
      "# TYPE nagare_sink_ack_latency_seconds histogram",
      'nagare_sink_ack_latency_seconds_bucket{sink="a",le="0.1"} 7',
      'nagare_sink_ack_latency_seconds_bucket{sink="a",le="+Inf"} 9',
      'nagare_sink_ack_latency_seconds_sum{sink="a"} 0.5',
      'nagare_sink_ack_latency_seconds_count{sink="a"} 9',
      "# TYPE rpc_seconds summary",
      'rpc_seconds{quantile="0.5"} 1',
      "rpc_seconds_count 2",
      "nagare_buffer_used_bytes 1.5e3",
      "nagare_odd NaN",
      "nagare_up +Inf",
      "nagare_broken{sink=\"unterminated} 1",
      "nagare_no_value",
      "",
    ].join("\n");
    const samples = parsePrometheus(text);
    expect(samples.map((s) => s.name)).toEqual(["nagare_sink_errors_total", "nagare_sink_errors_total", "nagare_buffer_used_bytes", "nagare_odd", "nagare_up"]);
    expect(samples[0]).toEqual({ name: "nagare_sink_errors_total", labels: { sink: 'a "quoted" one', code: "TIMEOUT" }, value: 3 });
    expect(samples[1]).toEqual({ name: "nagare_sink_errors_total", labels: { sink: "back\\slash\nnewline", code: "X" }, value: 4 });
    expect(samples[2]!.value).toBe(1500);
    expect(samples[3]!.value).toBeNaN();
    expect(samples[4]!.value).toBe(Number.POSITIVE_INFINITY);
  });
});

const scrapeOf = (at: number, lines: string[]): Scrape => ({ at, samples: parsePrometheus(lines.join("\n")) });

describe("the view", () => {
  const first = scrapeOf(1_700_000_010_000, [
    "process_start_time_seconds 1699999940",
    "process_cpu_seconds_total 4",
    "nagare_buffer_paused_seconds_total 74",
    'nagare_source_read_records_total{source="journal"} 100',
    'nagare_sink_sent_records_total{sink="fwd"} 90',
    'nagare_sink_acknowledged_records_total{sink="fwd"} 80',
  ]);
  const second = scrapeOf(1_700_000_012_500, [
    "process_start_time_seconds 1699999940",
    "process_cpu_seconds_total 5",
    "process_resident_memory_bytes 52428800",
    "nagare_buffer_used_bytes 1048576",
    "nagare_buffer_limit_bytes 8388608",
    "nagare_buffer_paused 1",
    "nagare_buffer_paused_seconds_total 75",
    'nagare_source_read_records_total{source="journal"} 350',
    'nagare_source_outstanding_batches{source="journal"} 3',
    'nagare_source_failing_seconds{source="gateway"} 12',
    'nagare_sink_sent_records_total{sink="fwd"} 40',
    'nagare_sink_acknowledged_records_total{sink="fwd"} 30',
    'nagare_sink_retries_total{sink="fwd"} 2',
    'nagare_sink_errors_total{sink="fwd",code="TIMEOUT"} 2',
    'nagare_sink_errors_total{sink="fwd",code="SINK_UNAVAILABLE"} 5',
    'nagare_sink_queued_batches{sink="fwd"} 4',
    'nagare_forward_server_up{sink="fwd",server="agg-1:24224"} 1',
    'nagare_forward_server_up{sink="fwd",server="agg-2:24224"} 0',
  ]);

  test("rates are the counters' increase between two scrapes per second; a counter that went down counts from 0", () => {
    const view = viewOf(first, second);
    expect(view.uptime).toBe(72.5);
    expect(view.cpu).toBe(0.4);
    expect(view.rss).toBe(52428800);
    expect(view.buffer).toEqual({ used: 1048576, limit: 8388608, paused: true, pausedSeconds: 75, pausedShare: 0.4 });
    expect(view.sources).toEqual([
      { name: "journal", readRate: 100, read: 350, outstanding: 3, failingSeconds: 0 },
      { name: "gateway", readRate: undefined, read: 0, outstanding: 0, failingSeconds: 12 },
    ]);
    // The sink's counters went down (the agent restarted between the scrapes): its rates count from 0.
    expect(view.sinks).toEqual([
      {
        name: "fwd",
        sentRate: 16,
        ackedRate: 12,
        acked: 30,
        retries: 2,
        errors: 7,
        errorCodes: [
          ["SINK_UNAVAILABLE", 5],
          ["TIMEOUT", 2],
        ],
        deadLettered: 0,
        queued: 4,
        serversDown: ["agg-2:24224"],
      },
    ]);
  });

  test("the first scrape alone has no rates, shown as —", () => {
    const view = viewOf(undefined, second);
    expect(view.sources[0]!.readRate).toBeUndefined();
    expect(view.cpu).toBeUndefined();
    const screen = renderView(view, { url: "http://127.0.0.1:24280", at: second.at, width: 80 });
    expect(rowOf(screen, "journal")).toEqual(["journal", "—", "350", "3", "paused"]);
  });

  test("the screen: header, buffer, a row per source and per sink, error codes and servers down", () => {
    const screen = renderView(viewOf(first, second), { url: "http://127.0.0.1:24280", at: second.at, width: 80 });
    const lines = screen.split("\n");
    expect(lines[0]).toStartWith("nagare http://127.0.0.1:24280 ");
    expect(lines[0]).toContain("up 1m12s  RSS 50.0 MiB  CPU 40%");
    expect(lines[1]).toBe("buffer [##..............]  13%  1.0 MiB of 8.0 MiB  paused 40%, 1m15s in all");
    expect(rowOf(screen, "SOURCE")).toEqual(["SOURCE", "IN/s", "READ", "BATCHES", "STATE"]);
    expect(rowOf(screen, "journal")).toEqual(["journal", "100", "350", "3", "reading"]);
    expect(rowOf(screen, "gateway")).toEqual(["gateway", "—", "0", "0", "FAILING", "12s"]);
    expect(rowOf(screen, "SINK")).toEqual(["SINK", "OUT/s", "ACK/s", "ACKED", "RETRIES", "ERRORS", "DEAD", "QUEUED"]);
    expect(rowOf(screen, "fwd")).toEqual(["fwd", "16", "12", "30", "2", "7", "0", "4"]);
    expect(lines).toContain("  servers down: agg-2:24224");
    expect(lines).toContain("  errors: SINK_UNAVAILABLE 5, TIMEOUT 2");
    expect(screen).not.toContain("\x1b");
    // On a wide terminal the name column is as wide as the longest name needs, so numbers stay near their names.
    const wide = renderView(viewOf(first, second), { url: "http://127.0.0.1:24280", at: second.at, width: 200 });
    expect(wide.split("\n").find((l) => l.startsWith("journal"))).toBe(`${"journal".padEnd(12)}${"100".padStart(10)}${"350".padStart(11)}${"3".padStart(8)}  reading`);
  });

  test("everything fits 80 columns: long and wide names end in …, big numbers turn compact, control characters are shown as ?", () => {
    const long = "a-source-with-a-name-far-longer-than-its-column-allows";
    const view: View = {
      uptime: 90 * 86400,
      rss: 3 * 2 ** 30,
      cpu: 1.5,
      buffer: { used: 2 ** 40, limit: 2 ** 40, paused: false, pausedSeconds: 0, pausedShare: 0 },
      sources: [
        { name: long, readRate: 123456789, read: 1.23e15, outstanding: 123456789, failingSeconds: 0 },
        { name: "日本語のとても長いソースの名前です", readRate: 0.25, read: 1, outstanding: 0, failingSeconds: 0 },
        { name: "evil\x1b[2Jname", readRate: 5, read: 0, outstanding: 0, failingSeconds: 0 },
      ],
      sinks: [
        {
          name: `${long}-sink`,
          sentRate: 98765432,
          ackedRate: 9876543,
          acked: 1e13,
          retries: 1e9,
          errors: 123456,
          errorCodes: Array.from({ length: 12 }, (_, i) => [`SOME_LONG_ERROR_CODE_${i}`, 1e6 + i] as [string, number]),
          deadLettered: 99999,
          queued: 1234567,
          serversDown: Array.from({ length: 10 }, (_, i) => `aggregator-${i}.example.internal:24224`),
        },
      ],
    };
    const screen = renderView(view, { url: `http://${"very-long-host-name.".repeat(5)}example:24280`, at: 0, width: 80 });
    const lines = screen.trimEnd().split("\n");
    for (const line of lines) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(80);
    expect(lines[0]).toMatch(/^nagare http:\/\/very-long-host-name\.[^ ]*… +up 90d00h  RSS 3\.0 GiB  CPU 150%  \d\d:\d\d:\d\d$/);
    const source = lines.find((l) => l.startsWith("a-source"))!;
    expect(source.split(/\s+/)).toEqual(["a-source-with-a-nam…", "123M", "1.23P", "123M", "reading"]);
    expect(lines.find((l) => l.startsWith("日本"))!.split(/\s+/)).toEqual(["日本語のとても長い…", "0.3", "1", "0", "reading"]);
    expect(lines.find((l) => l.startsWith("evil"))!.split(/\s+/)[0]).toBe("evil?[2Jname");
    const sink = lines[lines.findIndex((l) => l.startsWith("SINK")) + 1]!;
    expect(sink.split(/\s+/)).toEqual(["a-source-with-a-nam…", "98.8M", "9,876,543", "10.0T", "1.00G", "123k", "100k", "1.23M"]);
    // Columns line up whatever the name: every source row (all "reading") is as wide as the header line plus 2.
    const header = lines.find((l) => l.startsWith("SOURCE"))!;
    const rows = lines.filter((l) => /^(a-source|日本|evil)/.test(l) && l.endsWith("reading"));
    expect(rows.map((row) => Bun.stringWidth(row))).toEqual([header.length + 2, header.length + 2, header.length + 2]);
    expect(lines.find((l) => l.startsWith("  servers down:"))).toEndWith("…");
    expect(lines.find((l) => l.startsWith("  errors:"))).toEndWith("…");
    expect(screen).not.toContain("\x1b");
  });

  test("numbers: in full with separators while they fit their column, then compact; rates with one decimal below 10", () => {
    expect([count(0, 11), count(1234567, 11), count(1234567890, 11), count(999_999, 6), count(1_000_000, 8)]).toEqual(["0", "1,234,567", "1.23G", "1.00M", "1.00M"]);
    expect([rate(undefined), rate(0), rate(0.04), rate(2.5), rate(9.96), rate(12_345.6)]).toEqual(["—", "0", "0.0", "2.5", "10", "12,346"]);
  });

  test("the buffer line: the share of the last interval sources were paused (not the moment of the scrape), over 100% when over the limit", () => {
    const line = (buffer: BufferState) =>
      renderView({ uptime: 1, rss: 1, cpu: 0, buffer, sources: [], sinks: [] }, { url: "http://x", at: 0, width: 80 }).split("\n")[1];
    const mib = 1024 * 1024;
    expect(line({ used: 0, limit: 8 * mib, paused: false, pausedSeconds: 0.4, pausedShare: 0 })).toBe("buffer [................]   0%  0 B of 8.0 MiB  reading");
    expect(line({ used: 2 * mib, limit: 8 * mib, paused: false, pausedSeconds: 75, pausedShare: 0 })).toBe("buffer [####............]  25%  2.0 MiB of 8.0 MiB  reading, paused 1m15s in all");
    // Paused at the moment of the scrape, yet sources read most of the interval.
    expect(line({ used: 7 * mib, limit: 8 * mib, paused: true, pausedSeconds: 75, pausedShare: 0.25 })).toBe("buffer [##############..]  88%  7.0 MiB of 8.0 MiB  paused 25%, 1m15s in all");
    expect(line({ used: 13 * mib, limit: 10 * mib, paused: true, pausedSeconds: 3700, pausedShare: 1 })).toBe("buffer [################] 130%  13.0 MiB of 10.0 MiB  PAUSED, 1h01m in all");
    // The first frame has no interval yet: the moment is all there is.
    expect(line({ used: 8 * mib, limit: 8 * mib, paused: true, pausedSeconds: 0, pausedShare: undefined })).toBe("buffer [################] 100%  8.0 MiB of 8.0 MiB  PAUSED");
  });

  test("unreachable: the URL, the error and the last answer, within the width", () => {
    const error = "connection refused (is the agent running, with its API at this address?) and then some more words to wrap";
    const screen = renderUnreachable(error, Date.UTC(2026, 0, 1, 10, 0, 0), { url: "http://127.0.0.1:24280", at: 0, width: 40 });
    const lines = screen.split("\n");
    for (const line of lines) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(40);
    expect(lines.slice(2, 6)).toEqual(["cannot reach http://127.0.0.1:24280/met…", "connection refused (is the agent", "running, with its API at this address?)", "and then some more words to wrap"]);
    expect(lines[6]).toBe("trying again every second; last answer …");
  });
});

/** The whitespace-separated cells of the first line whose first cell is `first`. */
function rowOf(screen: string, first: string): string[] | undefined {
  return screen
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .find((cells) => cells[0] === first);
}

const numberOf = (cell: string | undefined) => Number(cell?.replaceAll(",", ""));

/** A TCP port nothing listens on (a listener opened and closed again). */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `nagare top` (live) as a process whose stdout is collected; stop() sends SIGINT and returns the exit status. */
function startTop(args: string[]) {
  const proc = Bun.spawn([...CLI, "top", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let out = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) out += decoder.decode(chunk, { stream: true });
  })();
  return {
    output: () => out,
    running: () => proc.exitCode === null,
    async stop(): Promise<number> {
      proc.kill("SIGINT");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      const code = await proc.exited;
      clearTimeout(timer);
      await reading;
      return code;
    },
  };
}

describe("nagare top against an agent", () => {
  test("--once: a row per source and per sink and the buffer line, matching the agent's /metrics; live mode redraws with rates", async () => {
    await withServer({}, async (server) => {
      const dir = caseDir();
      const n = 2500;
      const journal = await journalOf(dir, n);
      const config = writeAgentConfig(dir, {
        api: "127.0.0.1:0",
        sources: {
          journal: { type: "journald", directory: journal, start_at: "head" },
          again: { type: "journald", directory: journal, start_at: "head" },
        },
        sinks: {
          forward: { type: "forward", inputs: ["journal", "again"], servers: [{ host: "127.0.0.1", port: server.port }], tag: "t", ack_timeout: "2s", connect_timeout: "2s" },
          out: { type: "file", inputs: ["journal"], path: join(dir, "out.jsonl") },
        },
      });
      const agent = new RunningAgent(config);
      try {
        const api = await apiOf(agent);
        const metrics = async () => (await fetch(`${api}/metrics`)).text();
        const acked = (text: string, sink: string) => metricValue(text, "nagare_sink_acknowledged_records_total", `sink="${sink}"`);
        const text: string = await waitFor("every record acknowledged by both sinks", async () => {
          const t = await metrics();
          // and saved, so that the buffer is empty again
          const used = metricValue(t, "nagare_buffer_used_bytes", "");
          return acked(t, "forward") === 2 * n && acked(t, "out") === n && used === 0 ? t : "";
        }, 30_000);

        const top = await runCli(["top", "--once", "--url", api]);
        expect(top.stderr).toBe("");
        expect(top.code).toBe(0);
        const screen = top.stdout;
        for (const line of screen.trimEnd().split("\n")) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(80);
        expect(screen).not.toContain("\x1b");
        expect(screen.split("\n")[0]).toStartWith(`nagare ${api} `);
        for (const source of ["journal", "again"]) {
          const row = rowOf(screen, source)!;
          expect(numberOf(row[2])).toBe(metricValue(text, "nagare_source_read_records_total", `source="${source}"`));
          expect(numberOf(row[2])).toBe(n);
          // Everything is acknowledged and the journal does not grow: nothing read between the two scrapes.
          expect([row[1], row[3], row[4]]).toEqual(["0", "0", "idle"]);
        }
        for (const [sink, expected] of [["forward", 2 * n], ["out", n]] as const) {
          const row = rowOf(screen, sink)!;
          expect(numberOf(row[3])).toBe(acked(text, sink));
          expect(numberOf(row[3])).toBe(expected);
          expect(row.slice(4)).toEqual(["0", "0", "0", "0"]);
        }
        expect(metricValue(text, "nagare_buffer_limit_bytes", "")).toBe(8 * 1024 * 1024);
        expect(screen).toMatch(/^buffer \[\.{16}\]   0%  0 B of 8\.0 MiB  reading$/m);

        // Live without a terminal: frames one after another, the first without rates, the next with them.
        const live = startTop(["--url", `${api}/`]);
        // A third frame begun means the first two are whole.
        const frames = () => live.output().split(/^(?=nagare http)/m);
        await waitFor("three frames of the live view", () => frames().length >= 3, 15_000);
        expect(await live.stop()).toBe(0);
        expect(live.output()).not.toContain("\x1b");
        expect(rowOf(frames()[0]!, "journal")!.slice(0, 3)).toEqual(["journal", "—", "2,500"]);
        expect(rowOf(frames()[1]!, "journal")!.slice(0, 3)).toEqual(["journal", "0", "2,500"]);
      } finally {
        agent.kill();
        await agent.exited;
      }
    });
  }, 90_000);

  test("--once against an address where no agent listens: a clear message and exit 69", async () => {
    const port = await closedPort();
    const r = await runCli(["top", "--once", "--url", `http://127.0.0.1:${port}`]);
    expect(r).toEqual({
      code: 69,
      stdout: "",
      stderr: `nagare top: cannot reach http://127.0.0.1:${port}/metrics: connection refused (is the agent running, with its API at this address?)\n`,
    });
  });

  test("live against an address where no agent listens: it says so and keeps trying until Ctrl-C, then exits 0", async () => {
    const port = await closedPort();
    const live = startTop(["--url", `http://127.0.0.1:${port}`]);
    const failures = () => live.output().split(`cannot reach http://127.0.0.1:${port}/metrics:\nconnection refused`).length - 1;
    await waitFor("two failed attempts shown", () => failures() >= 2, 15_000);
    expect(live.running()).toBe(true);
    expect(await live.stop()).toBe(0);
    expect(live.output()).toContain("trying again every second\n");
  });

  test("without --url it reads the config's api.address; a config with the API off exits 78; a bad --url exits 64", async () => {
    const dir = caseDir();
    const port = await closedPort();
    const parts = { sources: { journal: { type: "journald", directory: join(dir, "journal") } }, sinks: { out: { type: "file", inputs: ["journal"], path: join(dir, "out.jsonl") } } };
    const withApi = writeAgentConfig(dir, { ...parts, api: `127.0.0.1:${port}` }, "api.json");
    const r = await runCli(["top", "--once", "-c", withApi]);
    expect(r.code).toBe(69);
    expect(r.stderr).toStartWith(`nagare top: cannot reach http://127.0.0.1:${port}/metrics: `);

    const off = writeAgentConfig(dir, parts, "off.json");
    const noApi = await runCli(["top", "--once", "-c", off]);
    expect(noApi).toEqual({
      code: 78,
      stdout: "",
      stderr: `nagare top reads the agent's /metrics, but the config ${off} turns the API off (api: false): turn it on, or give the API's address with --url\n`,
    });

    const bad = await runCli(["top", "--once", "--url", "127.0.0.1:24280"]);
    expect(bad).toEqual({ code: 64, stdout: "", stderr: '--url expects the agent API\'s base URL, like http://127.0.0.1:24280, not "127.0.0.1:24280"\n' });
  });
});
