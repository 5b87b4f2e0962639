/**
 * What ships for monitoring: the Prometheus alert rules pass promtool and their unit tests, and every metric the
 * rules and the Grafana dashboard query is one a running agent exposes — so a renamed metric breaks this test,
 * not a dashboard in the field.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TCPSocketListener } from "bun";
import { apiOf, countLines, metricValue, ROOT, RunningAgent } from "./support/agent.ts";
import { caseDirs, writeAgentConfig } from "./support/config.ts";
import { ContainerWriter } from "./support/docker-writer.ts";
import { startForwardServer } from "./support/forward-server.ts";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { Metrics } from "../src/observe/metrics.ts";

const RULES = join(ROOT, "deploy", "prometheus", "nagare-alerts.yaml");
const RULE_TESTS = join(ROOT, "deploy", "prometheus", "nagare-alerts.test.yaml");
const DASHBOARD = join(ROOT, "deploy", "grafana", "nagare-dashboard.json");
const PROMTOOL = Bun.which("promtool") ?? "/usr/bin/promtool";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  name?: string;
  alert_rule_test?: { eval_time: string; alertname: string; exp_alerts?: unknown[] }[];
}
interface Panel {
  title?: string;
  type: string;
  datasource?: { uid?: string };
  targets?: { expr: string }[];
  panels?: Panel[];
}

const rules = (): Rule[] => (Bun.YAML.parse(readFileSync(RULES, "utf8")) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const ruleTests = (): RuleTest[] => (Bun.YAML.parse(readFileSync(RULE_TESTS, "utf8")) as { tests: RuleTest[] }).tests;
const dashboard = () => JSON.parse(readFileSync(DASHBOARD, "utf8")) as { schemaVersion: number; templating: { list: { name: string; type: string; query: unknown }[] }; panels: Panel[] };
const panelsOf = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...panelsOf(p.panels ?? [])]);
const dashboardExprs = (): string[] => panelsOf(dashboard().panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr));

async function promtool(...args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn([PROMTOOL, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, out: stdout + stderr };
}

// Words of PromQL that are not metric names when they stand alone (aggregations, set operators, modifiers).
const KEYWORDS = new Set(["sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group", "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"]);
// Words followed by a list of label names in parentheses.
const LABEL_LISTS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);

/** Index just past the bracketed or quoted part that starts at `i` (strings inside brackets are skipped whole). */
function skipPart(expr: string, i: number): number {
  const open = expr[i]!;
  if (open === '"' || open === "'" || open === "`") {
    let j = i + 1;
    while (j < expr.length && expr[j] !== open) j += expr[j] === "\\" && open !== "`" ? 2 : 1;
    return j + 1;
  }
  const close = ({ "{": "}", "[": "]", "(": ")" } as Record<string, string>)[open]!;
  let j = i + 1;
  while (j < expr.length && expr[j] !== close) j = /["'`]/.test(expr[j]!) ? skipPart(expr, j) : j + 1;
  return j + 1;
}

/**
 * The metric names a PromQL expression selects: identifiers that are not called as functions, not keywords,
 * not inside a label matcher `{...}`, a range `[...]`, a string, or the label list of by/without/on/ignoring.
 * Numbers with units (5m, 1e3) and Grafana variables ($instance) are skipped.
 */
function metricNames(expr: string): string[] {
  const names = new Set<string>();
  let labelList = false;
  for (let i = 0; i < expr.length; ) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "(" && labelList) {
      i = skipPart(expr, i);
      labelList = false;
      continue;
    }
    labelList = false;
    if (/["'`{[]/.test(c)) i = skipPart(expr, i);
    else if (/[0-9.$]/.test(c)) i = (/^[$0-9.][\w.+-]*/.exec(expr.slice(i))?.[0].length ?? 1) + i;
    else if (/[a-zA-Z_:]/.test(c)) {
      const word = /^[a-zA-Z_:][\w:]*/.exec(expr.slice(i))![0];
      i += word.length;
      const called = /^\s*\(/.test(expr.slice(i));
      if (LABEL_LISTS.has(word)) labelList = true;
      else if (!KEYWORDS.has(word) && !called) names.add(word);
    } else i++;
  }
  return [...names];
}

/** Families listed on a /metrics page (name to type), and the names that have samples. */
function parseExposition(text: string): { families: Map<string, string>; sampled: Set<string> } {
  const families = new Map<string, string>();
  const sampled = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1]!, type[2]!);
    else if (line !== "" && !line.startsWith("#")) sampled.add(/^[^{ ]+/.exec(line)![0]);
  }
  return { families, sampled };
}

/** Whether `name` is a series of a listed family: the family itself, or a histogram's _bucket/_sum/_count. */
function exposes(families: Map<string, string>, name: string): boolean {
  if (families.has(name)) return true;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && families.get(base) === "histogram";
}

/** Every family name src/ creates or declares (string literals passed to counter/gauge/histogram/declare). */
function familiesInSource(): string[] {
  const names = new Set<string>();
  for (const file of new Bun.Glob("src/**/*.ts").scanSync(ROOT)) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const m of text.matchAll(/\.(?:counter|gauge|histogram)\(\s*"([a-zA-Z_:][\w:]*)"|\.declare\(\s*"(?:counter|gauge|histogram)",\s*"([a-zA-Z_:][\w:]*)"/g)) names.add((m[1] ?? m[2])!);
  }
  return [...names].sort();
}

describe("alert rules", () => {
  test("every alert has a duration, a severity, a summary and a description that says what to check first", () => {
    const all = rules();
    expect(all.length).toBeGreaterThanOrEqual(20);
    for (const r of all) {
      expect({ alert: r.alert, for: typeof r.for }).toEqual({ alert: r.alert, for: "string" });
      expect(["critical", "warning"]).toContain(r.labels?.severity ?? "");
      expect(r.annotations?.summary ?? "").not.toBe("");
      expect({ alert: r.alert, description: r.annotations?.description ?? "" }).toMatchObject({ description: expect.stringMatching(/check first[^]*`[^`]+`/i) });
    }
    expect(new Set(all.map((r) => r.alert)).size).toBe(all.length);
  });

  test("promtool check rules accepts the file", async () => {
    const { code, out } = await promtool("check", "rules", RULES);
    expect(out).toContain(`SUCCESS: ${rules().length} rules found`);
    expect(code).toBe(0);
  });

  test("promtool test rules passes, with a case that fires and one that does not for every alert", async () => {
    const cases = ruleTests().flatMap((t) => t.alert_rule_test ?? []);
    const alerts = rules().map((r) => r.alert);
    const firing = (a: string) => cases.filter((c) => c.alertname === a && (c.exp_alerts ?? []).length > 0).length;
    const quiet = (a: string) => cases.filter((c) => c.alertname === a && (c.exp_alerts ?? []).length === 0).length;
    expect(alerts.filter((a) => firing(a) < 1 || quiet(a) < 1)).toEqual([]);
    expect(cases.map((c) => c.alertname).filter((a) => !alerts.includes(a))).toEqual([]);
    const { code, out } = await promtool("test", "rules", RULE_TESTS);
    expect(out).toContain("SUCCESS");
    expect(out).not.toContain("FAILED");
    expect(code).toBe(0);
  });
});

describe("Grafana dashboard", () => {
  test("is importable: schema 39, a Prometheus data source variable used by every panel, an instance variable", () => {
    const d = dashboard();
    expect(d.schemaVersion).toBeGreaterThanOrEqual(39);
    const vars = Object.fromEntries(d.templating.list.map((v) => [v.name, v]));
    expect(vars.DS_PROMETHEUS).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(vars.instance?.type).toBe("query");
    const panels = panelsOf(d.panels).filter((p) => p.type !== "row");
    expect(panels.filter((p) => p.datasource?.uid !== "${DS_PROMETHEUS}").map((p) => p.title)).toEqual([]);
    expect(panels.filter((p) => (p.targets ?? []).length === 0).map((p) => p.title)).toEqual([]);
    expect(dashboardExprs().filter((e) => !e.includes('instance=~"$instance"'))).toEqual([]);
  });

  test("shows what the issue asks for: rates in and out, buffer, pauses, latency quantiles, retries, dead letters, errors, forward servers, checkpoints, process", () => {
    const exprs = dashboardExprs().join("\n");
    for (const wanted of [
      /rate\(nagare_source_read_records_total/,
      /rate\(nagare_sink_sent_records_total/,
      /rate\(nagare_sink_acknowledged_records_total/,
      /nagare_buffer_used_bytes/,
      /nagare_buffer_limit_bytes/,
      /nagare_buffer_paused_seconds_total/,
      /histogram_quantile\(0\.99, sum by \([^)]*\ble\b[^)]*\) \(rate\(nagare_sink_ack_latency_seconds_bucket/,
      /nagare_sink_retries_total/,
      /nagare_sink_dead_lettered_records_total/,
      /sum by \([^)]*\bcode\b[^)]*\) \(rate\(nagare_sink_errors_total/,
      /nagare_forward_server_up/,
      /nagare_source_checkpoint_age_seconds/,
      /process_resident_memory_bytes/,
      /rate\(process_cpu_seconds_total/,
    ])
      expect(exprs).toMatch(wanted);
  });
});

describe("metric names in PromQL", () => {
  test("are the selectors, not functions, keywords, label names, matchers, ranges or variables", () => {
    expect(metricNames('histogram_quantile(0.99, sum by (instance, sink, le) (rate(a_bucket{instance=~"$instance", x="b{c}"}[$__rate_interval])))')).toEqual(["a_bucket"]);
    expect(metricNames("b > 0 and on (sink) increase(c_total[10m] offset 5m) == 0 or absent(up{job=\"nagare\"})")).toEqual(["b", "c_total", "up"]);
    expect(metricNames("max without (server) (d) / ignoring (x) group_left (y) e * 1e3")).toEqual(["d", "e"]);
  });
});

describe("Metrics.declare", () => {
  test("lists a family with no series by its HELP and TYPE lines, and its series once made", () => {
    const metrics = new Metrics();
    const errors = metrics.declare("counter", "t_errors_total", "Errors by code.");
    expect(metrics.render()).toContain("# HELP t_errors_total Errors by code.\n# TYPE t_errors_total counter\n# HELP");
    errors({ code: "X" }).value += 2;
    expect(metrics.render()).toContain('# TYPE t_errors_total counter\nt_errors_total{code="X"} 2\n');
  });
});

/** A TCP server that accepts and never answers: a Kafka broker that is there but says nothing. */
function silentServer(): TCPSocketListener<undefined> {
  return Bun.listen<undefined>({ hostname: "127.0.0.1", port: 0, socket: { data: () => {} } });
}

describe("a running agent", () => {
  test("lists every family src/ creates, those without samples included, and every metric the rules and the dashboard query", async () => {
    const dir = caseDir();
    const journal = join(dir, "journal");
    await writeJournal(journal, sequenceEntries(1, 20));
    const root = join(dir, "containers");
    new ContainerWriter({ root, name: "web" }).writeMany(["one", "two", "three"]);
    const forward = await startForwardServer();
    // Kafka answers nothing within the test, so its error families must be listed before any error happened.
    const kafka = silentServer();
    const out = join(dir, "out.jsonl");
    const config = writeAgentConfig(dir, {
      api: "127.0.0.1:0",
      sources: {
        journal: { type: "journald", directory: journal, start_at: "head" },
        containers: { type: "docker", include: [`${root}/*/*-json.log`], rescan_interval: "200ms", poll_interval: "50ms" },
      },
      sinks: {
        file: { type: "file", inputs: ["journal", "containers"], path: out },
        forward: { type: "forward", inputs: ["journal"], servers: [{ host: "127.0.0.1", port: forward.port }], tag: "journal" },
        kafka: { type: "kafka", inputs: ["journal"], brokers: [`127.0.0.1:${kafka.port}`], topic: "logs", request_timeout: "120s", connect_timeout: "120s" },
      },
    });
    const agent = new RunningAgent(config);
    try {
      const api = await apiOf(agent);
      // Every component has run once the file and forward sinks delivered what both sources read.
      await waitFor("23 records in the file sink", () => countLines(out) >= 23, 20_000);
      await forward.waitFor(() => forward.events.length >= 20, 20_000);
      const text = await (await fetch(`${api}/metrics`)).text();
      const { families, sampled } = parseExposition(text);

      expect(familiesInSource().filter((name) => !families.has(name))).toEqual([]);
      const lazy = ["nagare_sink_errors_total", "nagare_kafka_errors_total"];
      expect(lazy.map((name) => [name, families.get(name), sampled.has(name)])).toEqual(lazy.map((name) => [name, "counter", false]));
      // Counters alerted on with increase() start at 0: the first failure is an increase only from a 0 sample.
      for (const name of ["nagare_dead_letter_write_failures_total", "nagare_dead_letter_discarded_records_total"])
        expect(["file", "forward", "kafka"].map((sink) => metricValue(text, name, `sink="${sink}"`))).toEqual([0, 0, 0]);

      const check = Bun.spawn([PROMTOOL, "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
      const [checkOut, checkErr, checkCode] = await Promise.all([new Response(check.stdout).text(), new Response(check.stderr).text(), check.exited]);
      expect({ problems: checkOut + checkErr, code: checkCode }).toEqual({ problems: "", code: 0 });

      // `up` is made by Prometheus for every target, not exposed by it.
      const queried = [...rules().map((r) => r.expr), ...dashboardExprs()].flatMap(metricNames).filter((n) => n !== "up");
      expect(queried.length).toBeGreaterThan(40);
      expect([...new Set(queried)].filter((name) => !exposes(families, name))).toEqual([]);
    } finally {
      agent.kill("SIGKILL");
      await agent.exited;
      kafka.stop(true);
      await forward.stop();
    }
  }, 60_000);
});
