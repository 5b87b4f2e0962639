/**
 * `nagare top`'s screen as plain lines of at most `width` columns (names that do not fit end in …): a header
 * (agent URL, uptime, memory, CPU), the buffer's fill, a table of sources and a table of sinks. No terminal
 * codes: the caller adds them when it redraws a terminal.
 *
 *   nagare http://127.0.0.1:24280          up 3h12m  RSS 61.2 MiB  CPU 14%  10:42:01
 *   buffer [#####...........]  31%  2.5 MiB of 8.0 MiB  paused 12%, 1m15s in all
 *
 *   SOURCE            IN/s       READ BATCHES  STATE
 *   journal         12,345  1,234,567       3  reading
 *
 *   SINK             OUT/s     ACK/s      ACKED RETRIES ERRORS  DEAD QUEUED
 *   forward         12,300    12,300  1,234,000       0      7     0      2
 *     servers down: agg-2.example:24224
 *     errors: SINK_UNAVAILABLE 7
 */
import type { BufferState, SinkRow, SourceRow, View } from "./view.ts";
import { formatDuration } from "../format.ts";

/** Right-aligned numeric columns: header and width (the width includes the gap before the column). */
const SOURCE_COLUMNS = [["IN/s", 10], ["READ", 11], ["BATCHES", 8]] as const;
const SINK_COLUMNS = [["OUT/s", 10], ["ACK/s", 10], ["ACKED", 11], ["RETRIES", 8], ["ERRORS", 7], ["DEAD", 6], ["QUEUED", 7]] as const;
const NUMBERS_WIDTH = SINK_COLUMNS.reduce((n, [, w]) => n + w, 0);
const MIN_NAME = 8;

export interface Frame {
  url: string;
  /** Wall-clock time of the scrape, ms. */
  at: number;
  width: number;
}

export function renderView(view: View, frame: Frame): string {
  // As wide as the longest name needs (numbers stay near their names on a wide terminal), at most what is left.
  const longest = Math.max(0, ...[...view.sources, ...view.sinks].map((row) => Bun.stringWidth(clean(row.name))));
  const nameWidth = Math.max(MIN_NAME, Math.min(frame.width - NUMBERS_WIDTH, Math.max(12, longest + 2)));
  const stats = [
    view.uptime === undefined ? "" : `up ${formatDuration(view.uptime * 1000)}`,
    view.rss === undefined ? "" : `RSS ${bytes(view.rss)}`,
    view.cpu === undefined ? "" : `CPU ${Math.round(view.cpu * 100)}%`,
    clock(frame.at),
  ];
  const lines = [header(frame, stats.filter((s) => s !== "").join("  ")), bufferLine(view), ""];
  lines.push(fit("SOURCE", nameWidth).padEnd(nameWidth) + SOURCE_COLUMNS.map(([h, w]) => h.padStart(w)).join("") + "  STATE");
  for (const row of view.sources) lines.push(sourceLine(row, nameWidth, view.buffer?.paused === true));
  lines.push("", fit("SINK", nameWidth).padEnd(nameWidth) + SINK_COLUMNS.map(([h, w]) => h.padStart(w)).join(""));
  for (const row of view.sinks) lines.push(...sinkLines(row, nameWidth));
  return lines.map((l) => fit(l, frame.width)).join("\n") + "\n";
}

/** The screen while /metrics cannot be read: what failed, and when the agent last answered. */
export function renderUnreachable(error: string, lastAnswer: number | undefined, frame: Frame): string {
  const lines = [
    header(frame, clock(frame.at)),
    "",
    `cannot reach ${frame.url}/metrics:`,
    ...wrap(clean(error), frame.width),
    lastAnswer === undefined ? "trying again every second" : `trying again every second; last answer at ${clock(lastAnswer)}`,
  ];
  return lines.map((l) => fit(clean(l), frame.width)).join("\n") + "\n";
}

/** `text` in lines of at most `width` columns, broken at spaces (a longer word is cut by the caller's fit). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && Bun.stringWidth(`${line} ${word}`) > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

function header(frame: Frame, stats: string): string {
  const room = frame.width - stats.length - 2;
  return `${padEnd(fit(clean(`nagare ${frame.url}`), room), room)}  ${stats}`;
}

function bufferLine(view: View): string {
  const b = view.buffer;
  if (b === undefined) return "buffer: not reported";
  const fill = b.limit > 0 ? b.used / b.limit : 0;
  const bar = 16;
  const filled = Math.round(Math.min(1, fill) * bar);
  return `buffer [${"#".repeat(filled)}${".".repeat(bar - filled)}] ${`${Math.round(fill * 100)}%`.padStart(4)}  ${bytes(b.used)} of ${bytes(b.limit)}  ${bufferState(b)}`;
}

/**
 * Whether sources read. Under load the buffer pauses and resumes many times a second, so the moment of the
 * scrape says little: the share of the last interval spent paused says how hard the sinks hold the sources back.
 */
function bufferState(b: BufferState): string {
  const share = b.pausedShare ?? (b.paused ? 1 : 0);
  const now = share >= 0.995 ? "PAUSED" : share >= 0.005 ? `paused ${Math.round(share * 100)}%` : "reading";
  if (b.pausedSeconds < 1) return now;
  return `${now}, ${now === "reading" ? "paused " : ""}${formatDuration(b.pausedSeconds * 1000)} in all`;
}

function sourceLine(row: SourceRow, nameWidth: number, paused: boolean): string {
  const cells = [rate(row.readRate), count(row.read, 11), count(row.outstanding, 8)];
  const state =
    row.failingSeconds > 0
      ? `FAILING ${formatDuration(row.failingSeconds * 1000)}`
      : row.readRate !== undefined && row.readRate > 0
        ? "reading"
        : paused
          ? "paused"
          : row.readRate === undefined
            ? ""
            : "idle";
  return name(row.name, nameWidth) + cells.map((c, i) => c.padStart(SOURCE_COLUMNS[i]![1])).join("") + `  ${state}`;
}

function sinkLines(row: SinkRow, nameWidth: number): string[] {
  const cells = [rate(row.sentRate), rate(row.ackedRate), count(row.acked, 11), count(row.retries, 8), count(row.errors, 7), count(row.deadLettered, 6), count(row.queued, 7)];
  const lines = [name(row.name, nameWidth) + cells.map((c, i) => c.padStart(SINK_COLUMNS[i]![1])).join("")];
  if (row.serversDown.length > 0) lines.push(clean(`  servers down: ${row.serversDown.join(", ")}`));
  if (row.errorCodes.length > 0) lines.push(clean(`  errors: ${row.errorCodes.map(([code, n]) => `${code} ${count(n, 12).trim()}`).join(", ")}`));
  return lines;
}

function name(text: string, width: number): string {
  return padEnd(fit(clean(text), width - 1), width);
}

/** padEnd by terminal columns: a wide character takes two. */
function padEnd(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - Bun.stringWidth(text)));
}

/** Control characters (a name could hold an escape sequence) shown as `?`, so a label cannot drive the terminal. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/** `text` cut to `width` terminal columns, its last column an ellipsis when it was cut. */
function fit(text: string, width: number): string {
  if (Bun.stringWidth(text) <= width) return text;
  let out = "";
  let used = 0;
  for (const ch of text) {
    const w = Bun.stringWidth(ch);
    if (used + w > width - 1) break;
    out += ch;
    used += w;
  }
  return width > 0 ? `${out}…` : "";
}

const grouped = (n: number) => Math.round(n).toLocaleString("en-US");

/** A count in full with thousands separators when it fits the column (one column kept as a gap), else compact. */
export function count(n: number, width: number): string {
  const full = grouped(n);
  return full.length < width ? full : compact(n);
}

/** Records per second: — before there are two scrapes, one decimal below 10. */
export function rate(perSecond: number | undefined): string {
  if (perSecond === undefined) return "—";
  if (perSecond > 0 && perSecond < 9.95) return perSecond.toFixed(1);
  return perSecond < 1e7 ? grouped(perSecond) : compact(perSecond);
}

function compact(n: number): string {
  const units = ["", "k", "M", "G", "T", "P"];
  let i = 0;
  while (Math.abs(n) >= 999.5 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Math.abs(n) < 9.995 ? n.toFixed(2) : Math.abs(n) < 99.95 ? n.toFixed(1) : n.toFixed(0)}${units[i]}`;
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function clock(ms: number): string {
  return new Date(ms).toTimeString().slice(0, 8);
}
