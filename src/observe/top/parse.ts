/**
 * A reader of the Prometheus text exposition format (0.0.4), for `nagare top`. Grammar, one item per line:
 *
 *   # HELP <name> <text>
 *   # TYPE <name> counter|gauge|histogram|summary|untyped
 *   # <any other comment>
 *   <name>[{<label>="<value>"[,<label>="<value>"]*[,]}] <value> [<timestamp ms>]
 *
 * A label value escapes `\\`, `\"` and `\n`; a value is a float or NaN, +Inf, -Inf. The samples of histogram and
 * summary families (<name>_bucket, _sum, _count, quantiles) are left out: top shows counters and gauges only. A
 * line that does not follow the grammar is skipped, so one odd line cannot blank the screen.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const distributions = new Set<string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) {
      const type = /^#\s*TYPE\s+(\S+)\s+(histogram|summary)\s*$/.exec(line);
      if (type) distributions.add(type[1]!);
      continue;
    }
    const sample = parseSample(line);
    if (sample !== undefined && !isDistributionPart(sample.name, distributions)) samples.push(sample);
  }
  return samples;
}

function isDistributionPart(name: string, distributions: ReadonlySet<string>): boolean {
  if (distributions.has(name)) return true;
  const suffix = /_(bucket|sum|count)$/.exec(name);
  return suffix !== null && distributions.has(name.slice(0, suffix.index));
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function parseSample(line: string): Sample | undefined {
  const trimmed = line.trim();
  const name = NAME.exec(trimmed)?.[0];
  if (name === undefined) return undefined;
  let rest = trimmed.slice(name.length);
  let labels: Record<string, string> = {};
  if (rest.startsWith("{")) {
    const parsed = parseLabels(rest);
    if (parsed === undefined) return undefined;
    labels = parsed.labels;
    rest = rest.slice(parsed.end);
  }
  const fields = rest.trim().split(/\s+/);
  if (fields.length > 2 || fields[0] === "") return undefined;
  const value = parseValue(fields[0]!);
  return value === undefined ? undefined : { name, labels, value };
}

function parseValue(text: string): number | undefined {
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (text === "NaN") return Number.NaN;
  const value = Number(text);
  return Number.isNaN(value) ? undefined : value;
}

/** The label set at the start of `text` (which starts with `{`) and the index just past its `}`. */
function parseLabels(text: string): { labels: Record<string, string>; end: number } | undefined {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    while (text[i] === " ") i++;
    if (text[i] === "}") return { labels, end: i + 1 };
    const key = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i))?.[0];
    if (key === undefined) return undefined;
    i += key.length;
    while (text[i] === " ") i++;
    if (text[i] !== "=") return undefined;
    i++;
    while (text[i] === " ") i++;
    if (text[i] !== '"') return undefined;
    i++;
    let value = "";
    for (;;) {
      const c = text[i];
      if (c === undefined) return undefined;
      i++;
      if (c === '"') break;
      if (c !== "\\") {
        value += c;
        continue;
      }
      const escaped = text[i++];
      if (escaped === undefined) return undefined;
      value += escaped === "n" ? "\n" : escaped;
    }
    labels[key] = value;
    while (text[i] === " ") i++;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") return undefined;
  }
}
