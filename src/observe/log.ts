/**
 * The agent's own log: one JSON object per line on stderr. Messages are full sentences; WARN means nothing
 * was lost, ERROR means data was lost or the agent cannot do its job. Repeated messages under the same key are
 * rate-limited: the first is written, the rest are counted and reported with the next one let through.
 * Credentials in URLs are redacted from every message and string field (./redact.ts).
 */
import { LogOutput } from "./log-output.ts";
import { redactingReplacer } from "./redact.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

interface Throttle {
  until: number;
  suppressed: number;
}

/** What a logger and all its children share: the level, the output and the throttles. */
interface LogSink {
  minRank: number;
  output: LogOutput;
  now: () => number;
  throttles: Map<string, Throttle>;
}

export class Logger {
  private readonly shared: LogSink;
  private readonly bindings: LogFields;

  constructor(level: LogLevel = "info", options: { fd?: number; now?: () => number } = {}, parent?: { shared: LogSink; bindings: LogFields }) {
    this.shared = parent?.shared ?? { minRank: RANK[level], output: LogOutput.of(options.fd ?? 2), now: options.now ?? Date.now, throttles: new Map() };
    this.bindings = parent?.bindings ?? {};
  }

  setLevel(level: LogLevel): void {
    this.shared.minRank = RANK[level];
  }

  /** A logger that adds `fields` (e.g. the component name) to every line; it shares level and throttles. */
  child(fields: LogFields): Logger {
    return new Logger("info", {}, { shared: this.shared, bindings: { ...this.bindings, ...fields } });
  }

  debug(msg: string, fields?: LogFields): void { this.write("debug", msg, fields); }
  info(msg: string, fields?: LogFields): void { this.write("info", msg, fields); }
  warn(msg: string, fields?: LogFields): void { this.write("warn", msg, fields); }
  error(msg: string, fields?: LogFields): void { this.write("error", msg, fields); }

  /**
   * Like the level methods, but at most one line per `key` every `intervalMs`; lines held back meanwhile are
   * reported as `repeated` on the next line written for that key.
   */
  limited(level: LogLevel, key: string, msg: string, fields?: LogFields, intervalMs = 10_000): void {
    if (RANK[level] < this.shared.minRank) return;
    const now = this.shared.now();
    const fullKey = `${String(this.bindings.component ?? "")}\0${key}`;
    const throttle = this.shared.throttles.get(fullKey);
    if (throttle !== undefined && now < throttle.until) {
      throttle.suppressed++;
      return;
    }
    const suppressed = throttle?.suppressed ?? 0;
    this.shared.throttles.set(fullKey, { until: now + intervalMs, suppressed: 0 });
    this.write(level, msg, suppressed > 0 ? { ...fields, repeated: suppressed } : fields);
  }

  private write(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    if (RANK[level] < this.shared.minRank) return;
    const line = JSON.stringify({ ts: new Date(this.shared.now()).toISOString(), level, msg, ...this.bindings, ...fields }, redactingReplacer);
    this.shared.output.write(`${line}\n`);
  }
}
