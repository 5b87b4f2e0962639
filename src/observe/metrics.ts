/**
 * Counters and gauges of the agent, labelled by component. Kept as plain numbers so the hot path pays one
 * property increment; the registry renders them in the Prometheus text format.
 */

export type Labels = Record<string, string>;

interface Series {
  labels: Labels;
  value: number;
}

interface Family {
  name: string;
  help: string;
  kind: "counter" | "gauge";
  series: Map<string, Series>;
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  /** A counter series; the returned object's `value` is incremented directly by its owner. */
  counter(name: string, help: string, labels: Labels = {}): Series {
    return this.series("counter", name, help, labels);
  }

  gauge(name: string, help: string, labels: Labels = {}): Series {
    return this.series("gauge", name, help, labels);
  }

  /** The value of a series, 0 when it was never created (for tests and summaries). */
  read(name: string, labels: Labels = {}): number {
    return this.families.get(name)?.series.get(labelKey(labels))?.value ?? 0;
  }

  /** Prometheus text exposition format 0.0.4. */
  render(): string {
    const lines: string[] = [];
    for (const family of this.families.values()) {
      lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.kind}`);
      for (const s of family.series.values()) lines.push(`${family.name}${formatLabels(s.labels)} ${s.value}`);
    }
    return `${lines.join("\n")}\n`;
  }

  private series(kind: Family["kind"], name: string, help: string, labels: Labels): Series {
    let family = this.families.get(name);
    if (family === undefined) {
      family = { name, help, kind, series: new Map() };
      this.families.set(name, family);
    }
    const key = labelKey(labels);
    let s = family.series.get(key);
    if (s === undefined) {
      s = { labels, value: 0 };
      family.series.set(key, s);
    }
    return s;
  }
}

function labelKey(labels: Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(",");
}

function formatLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
  return `{${keys.map((k) => `${k}="${escape(labels[k] ?? "")}"`).join(",")}}`;
}
