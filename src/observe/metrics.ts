/**
 * Counters, gauges and histograms of the agent, labelled by component, rendered in the Prometheus text
 * exposition format (0.0.4). Series are plain objects whose `value` the owner increments directly, so the hot
 * path pays one property update; values that are cheaper to read than to track (buffer fill, process RSS) are
 * filled in by collectors just before rendering.
 */
import { readdirSync } from "node:fs";
import { LogOutput } from "./log-output.ts";
import { redact } from "./redact.ts";

export type Labels = Record<string, string>;

export interface Series {
  labels: Labels;
  value: number;
}

export interface HistogramSeries {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
  observe(value: number): void;
}

interface Family {
  name: string;
  help: string;
  kind: "counter" | "gauge" | "histogram";
  buckets?: readonly number[];
  series: Map<string, Series | HistogramSeries>;
}

/** Latency buckets in seconds: 1 ms to 2 minutes. */
export const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;

export class Metrics {
  private readonly families = new Map<string, Family>();
  private readonly collectors = new Set<() => void>();
  private readonly startedAt = Date.now() / 1000;

  counter(name: string, help: string, labels: Labels = {}): Series {
    return this.series("counter", name, help, labels) as Series;
  }

  gauge(name: string, help: string, labels: Labels = {}): Series {
    return this.series("gauge", name, help, labels) as Series;
  }

  histogram(name: string, help: string, buckets: readonly number[], labels: Labels = {}): HistogramSeries {
    return this.series("histogram", name, help, labels, buckets) as HistogramSeries;
  }

  /**
   * Lists a family on /metrics (its HELP and TYPE lines) from now on, before its first series: a family whose
   * labels are only known when something happens (an error code) is otherwise invisible until then, and alert
   * rules and dashboards cannot tell a healthy agent from a renamed metric. Returns a maker of its series.
   */
  declare(kind: "counter" | "gauge", name: string, help: string): (labels: Labels) => Series;
  declare(kind: "histogram", name: string, help: string, buckets: readonly number[]): (labels: Labels) => HistogramSeries;
  declare(kind: Family["kind"], name: string, help: string, buckets?: readonly number[]): (labels: Labels) => Series | HistogramSeries {
    this.family(kind, name, help, buckets);
    return (labels) => this.series(kind, name, help, labels, buckets);
  }

  /** Runs `collect` before every render; returns a function that removes it (components that stop). */
  onCollect(collect: () => void): () => void {
    this.collectors.add(collect);
    return () => this.collectors.delete(collect);
  }

  /** The value of a counter or gauge series, 0 when it was never created (for tests and summaries). */
  read(name: string, labels: Labels = {}): number {
    const s = this.families.get(name)?.series.get(labelKey(labels));
    return s === undefined ? 0 : "value" in s ? s.value : s.count;
  }

  render(): string {
    for (const collect of this.collectors) collect();
    this.collectProcess();
    const lines: string[] = [];
    for (const family of this.families.values()) {
      lines.push(`# HELP ${family.name} ${family.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${family.name} ${family.kind}`);
      for (const s of family.series.values()) {
        if ("value" in s) lines.push(`${family.name}${formatLabels(s.labels)} ${formatNumber(s.value)}`);
        else renderHistogram(lines, family, s);
      }
    }
    return `${lines.join("\n")}\n`;
  }

  /** The standard process_* metrics every Prometheus client exports, and the agent's own log. */
  private collectProcess(): void {
    const cpu = process.cpuUsage();
    this.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.").value = (cpu.user + cpu.system) / 1e6;
    this.gauge("process_resident_memory_bytes", "Resident memory size in bytes.").value = process.memoryUsage.rss();
    this.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.").value = this.startedAt;
    let fds = 0;
    try {
      fds = readdirSync("/proc/self/fd").length;
    } catch {
      // not Linux: leave 0
    }
    this.gauge("process_open_fds", "Number of open file descriptors.").value = fds;
    this.counter("nagare_log_dropped_lines_total", "Lines of the agent's own log dropped because its output (stderr) was not being read.").value = LogOutput.droppedLines;
  }

  private family(kind: Family["kind"], name: string, help: string, buckets?: readonly number[]): Family {
    let family = this.families.get(name);
    if (family === undefined) {
      family = { name, help, kind, buckets, series: new Map() };
      this.families.set(name, family);
    }
    return family;
  }

  private series(kind: Family["kind"], name: string, help: string, labels: Labels, buckets?: readonly number[]): Series | HistogramSeries {
    const family = this.family(kind, name, help, buckets);
    const key = labelKey(labels);
    let s = family.series.get(key);
    if (s === undefined) {
      s = kind === "histogram" ? newHistogram(labels, family.buckets ?? LATENCY_BUCKETS) : { labels, value: 0 };
      family.series.set(key, s);
    }
    return s;
  }
}

function newHistogram(labels: Labels, buckets: readonly number[]): HistogramSeries {
  const h: HistogramSeries = {
    labels,
    counts: new Array(buckets.length).fill(0),
    sum: 0,
    count: 0,
    observe(value: number) {
      h.sum += value;
      h.count++;
      for (let i = 0; i < buckets.length; i++) if (value <= buckets[i]!) h.counts[i]!++;
    },
  };
  return h;
}

function renderHistogram(lines: string[], family: Family, h: HistogramSeries): void {
  const buckets = family.buckets ?? LATENCY_BUCKETS;
  buckets.forEach((le, i) => lines.push(`${family.name}_bucket${formatLabels({ ...h.labels, le: String(le) })} ${h.counts[i]}`));
  lines.push(`${family.name}_bucket${formatLabels({ ...h.labels, le: "+Inf" })} ${h.count}`);
  lines.push(`${family.name}_sum${formatLabels(h.labels)} ${formatNumber(h.sum)}`);
  lines.push(`${family.name}_count${formatLabels(h.labels)} ${h.count}`);
}

function formatNumber(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN";
}

function labelKey(labels: Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(",");
}

function formatLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  const escape = (v: string) => redact(v).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
  return `{${keys.map((k) => `${k}="${escape(labels[k] ?? "")}"`).join(",")}}`;
}
