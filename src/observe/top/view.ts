/**
 * What `nagare top` shows, computed from two consecutive scrapes of /metrics: a row per source and per sink
 * (rates from the counters' increase between the scrapes), the buffer's fill and the process's uptime, memory
 * and CPU. Pure, so that the numbers can be checked without a terminal or an agent.
 */
import type { Sample } from "./parse.ts";

/** One read of /metrics: its samples and the wall-clock time (ms) it was taken. */
export interface Scrape {
  at: number;
  samples: Sample[];
}

export interface SourceRow {
  name: string;
  /** Records read per second; undefined before a second scrape. */
  readRate: number | undefined;
  read: number;
  /** Batches read and not yet acknowledged by every sink. */
  outstanding: number;
  /** Seconds the source has been unable to read; 0 while it reads. */
  failingSeconds: number;
}

export interface SinkRow {
  name: string;
  /** Records handed to the destination per second (every attempt); undefined before a second scrape. */
  sentRate: number | undefined;
  ackedRate: number | undefined;
  acked: number;
  retries: number;
  errors: number;
  /** Failed attempts per error code, most frequent first. */
  errorCodes: [code: string, count: number][];
  deadLettered: number;
  queued: number;
  /** Forward servers marked down (host:port). */
  serversDown: string[];
}

export interface BufferState {
  used: number;
  limit: number;
  /** Paused at the moment of the scrape. */
  paused: boolean;
  /** Seconds paused since the agent started. */
  pausedSeconds: number;
  /** Share of the time between the scrapes that sources were paused (0..1); undefined before a second scrape. */
  pausedShare: number | undefined;
}

export interface View {
  /** Seconds since the agent started. */
  uptime: number | undefined;
  rss: number | undefined;
  /** CPU time per second of wall-clock time (1 = one core busy); undefined before a second scrape. */
  cpu: number | undefined;
  buffer: BufferState | undefined;
  sources: SourceRow[];
  sinks: SinkRow[];
}

type Index = Map<string, number>;

const keyOf = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",")}}`;

function indexOf(samples: Sample[]): Index {
  const index: Index = new Map();
  for (const s of samples) index.set(keyOf(s.name, s.labels), s.value);
  return index;
}

/** The values of the label `label` over the families whose name starts with `prefix`, in first-seen order. */
function namesOf(samples: Sample[], prefix: string, label: string): string[] {
  const names = new Set<string>();
  for (const s of samples) {
    const value = s.labels[label];
    if (value !== undefined && s.name.startsWith(prefix)) names.add(value);
  }
  return [...names];
}

/** Rate of a counter between two scrapes; a counter that went down was reset (the agent restarted). */
function rateOf(prev: Index | undefined, cur: Index, key: string, seconds: number): number | undefined {
  const before = prev?.get(key);
  const now = cur.get(key);
  if (before === undefined || now === undefined || seconds <= 0) return undefined;
  return (now >= before ? now - before : now) / seconds;
}

export function viewOf(previous: Scrape | undefined, current: Scrape): View {
  const cur = indexOf(current.samples);
  const prev = previous === undefined ? undefined : indexOf(previous.samples);
  const seconds = previous === undefined ? 0 : (current.at - previous.at) / 1000;
  const get = (name: string, labels: Record<string, string> = {}) => cur.get(keyOf(name, labels));
  const rate = (name: string, labels: Record<string, string> = {}) => rateOf(prev, cur, keyOf(name, labels), seconds);

  const started = get("process_start_time_seconds");
  const limit = get("nagare_buffer_limit_bytes");
  const sources = namesOf(current.samples, "nagare_source_", "source").map((name): SourceRow => {
    const labels = { source: name };
    return {
      name,
      readRate: rate("nagare_source_read_records_total", labels),
      read: get("nagare_source_read_records_total", labels) ?? 0,
      outstanding: get("nagare_source_outstanding_batches", labels) ?? 0,
      failingSeconds: get("nagare_source_failing_seconds", labels) ?? 0,
    };
  });
  const sinks = namesOf(current.samples, "nagare_sink_", "sink").map((name) => sinkRow(name, current.samples, get, rate));
  return {
    uptime: started === undefined ? undefined : Math.max(0, current.at / 1000 - started),
    rss: get("process_resident_memory_bytes"),
    cpu: rate("process_cpu_seconds_total"),
    buffer:
      limit === undefined
        ? undefined
        : {
            used: get("nagare_buffer_used_bytes") ?? 0,
            limit,
            paused: (get("nagare_buffer_paused") ?? 0) > 0,
            pausedSeconds: get("nagare_buffer_paused_seconds_total") ?? 0,
            pausedShare: rate("nagare_buffer_paused_seconds_total"),
          },
    sources,
    sinks,
  };
}

function sinkRow(
  name: string,
  samples: Sample[],
  get: (name: string, labels?: Record<string, string>) => number | undefined,
  rate: (name: string, labels?: Record<string, string>) => number | undefined,
): SinkRow {
  const labels = { sink: name };
  const errorCodes: [string, number][] = [];
  const serversDown: string[] = [];
  for (const s of samples) {
    if (s.labels.sink !== name) continue;
    if (s.name === "nagare_sink_errors_total" && s.value > 0) errorCodes.push([s.labels.code ?? "", s.value]);
    if (s.name === "nagare_forward_server_up" && s.value === 0) serversDown.push(s.labels.server ?? "");
  }
  errorCodes.sort((a, b) => b[1] - a[1]);
  return {
    name,
    sentRate: rate("nagare_sink_sent_records_total", labels),
    ackedRate: rate("nagare_sink_acknowledged_records_total", labels),
    acked: get("nagare_sink_acknowledged_records_total", labels) ?? 0,
    retries: get("nagare_sink_retries_total", labels) ?? 0,
    errors: errorCodes.reduce((n, [, count]) => n + count, 0),
    errorCodes,
    deadLettered: get("nagare_sink_dead_lettered_records_total", labels) ?? 0,
    queued: get("nagare_sink_queued_batches", labels) ?? 0,
    serversDown,
  };
}
