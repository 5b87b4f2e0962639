/**
 * `nagare top`: a live view of a running agent from its /metrics, redrawn every second: a row per source and per
 * sink with rates in and out (from two consecutive scrapes), the buffer's fill and the process's uptime, memory
 * and CPU. `--once` prints one snapshot (two scrapes a second apart, so that its rates are real) and exits, for
 * scripts. On a terminal the live view takes the alternate screen and gives it back on Ctrl-C; anything else
 * (a pipe, a file, `--once`) gets plain text without terminal codes, frames one after another.
 *
 * Exit status: 0; 64 for a --url that is not an http(s) URL; 78 when the config has the API off or is invalid
 * (without --url); 69 when `--once` cannot read /metrics (the agent down or not there: may heal). The live view
 * never gives up: it shows what failed and tries again every second.
 */
import { EX_CONFIG, EX_UNAVAILABLE, EX_USAGE } from "./exit-codes.ts";
import { parsePrometheus } from "./observe/top/parse.ts";
import { renderUnreachable, renderView, type Frame } from "./observe/top/render.ts";
import { viewOf, type Scrape } from "./observe/top/view.ts";
import { splitHostPort } from "./core/host-port.ts";

export interface TopOptions {
  url?: string;
  once?: boolean;
  config?: string;
}

const INTERVAL_MS = 1000;
/** A scrape that takes longer than this counts as failed: the screen must not freeze on a hung agent. */
const SCRAPE_TIMEOUT_MS = 2000;

export async function topCommand(options: TopOptions): Promise<void> {
  const url = options.url === undefined ? await configuredUrl(options.config) : baseUrl(options.url);
  process.stdout.on("error", () => process.exit(0)); // the reader went away (`nagare top | head`)
  if (options.once) return once(url);
  return live(url);
}

/** The API's base URL as given: scheme and authority (and a path prefix, behind a proxy), no trailing /metrics. */
function baseUrl(text: string): string {
  const url = URL.parse(text);
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) {
    process.stderr.write(`--url expects the agent API's base URL, like http://127.0.0.1:24280, not ${JSON.stringify(text)}\n`);
    process.exit(EX_USAGE);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "").replace(/\/metrics$/, "")}`;
}

/** http://<api.address> of the config `run` would use; a wildcard address is reached on the loopback. */
async function configuredUrl(path: string | undefined): Promise<string> {
  const { resolveConfig } = await import("./config/origin.ts");
  const origin = resolveConfig(path);
  const result = origin.load();
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`${problem}\n`);
    process.exit(EX_CONFIG);
  }
  if (result.config.api === false) {
    process.stderr.write(`nagare top reads the agent's /metrics, but the config ${origin.origin} turns the API off (api: false): turn it on, or give the API's address with --url\n`);
    process.exit(EX_CONFIG);
  }
  const { host, port } = splitHostPort(result.config.api.address);
  const reachable = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host;
  return `http://${reachable}:${port}`;
}

/** One scrape of /metrics, or why there is none, worded for the screen. */
async function scrape(url: string): Promise<Scrape | { problem: string }> {
  let response: Response;
  try {
    response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS), headers: { accept: "text/plain" } });
  } catch (err) {
    return { problem: fetchProblem(err) };
  }
  const text = await response.text().catch(() => "");
  if (!response.ok) return { problem: `it answered HTTP ${response.status}: is this the address of nagare's API?` };
  const samples = parsePrometheus(text);
  if (!samples.some((s) => s.name.startsWith("nagare_"))) return { problem: "its answer holds no nagare metrics: is this the address of nagare's API?" };
  return { at: Date.now(), samples };
}

function fetchProblem(err: unknown): string {
  const e = err as Error & { code?: string };
  if (e.name === "TimeoutError") return `no answer within ${SCRAPE_TIMEOUT_MS / 1000} s`;
  if (e.code === "ECONNREFUSED") return "connection refused (is the agent running, with its API at this address?)";
  return e.code !== undefined && !e.message.includes(e.code) ? `${e.message} (${e.code})` : e.message;
}

const width = () => (process.stdout.isTTY ? process.stdout.columns || 80 : 80);

async function once(url: string): Promise<void> {
  const first = await scrape(url);
  if ("problem" in first) return unreachable(url, first.problem);
  await Bun.sleep(INTERVAL_MS);
  const second = await scrape(url);
  if ("problem" in second) return unreachable(url, second.problem);
  process.stdout.write(renderView(viewOf(first, second), { url, at: second.at, width: width() }));
}

function unreachable(url: string, problem: string): never {
  process.stderr.write(`nagare top: cannot reach ${url}/metrics: ${problem}\n`);
  process.exit(EX_UNAVAILABLE);
}

// Alternate screen and hidden cursor while the view runs; the terminal's own screen comes back on exit.
const ENTER = "\x1b[?1049h\x1b[?25l";
const LEAVE = "\x1b[?25h\x1b[?1049l";

async function live(url: string): Promise<never> {
  const tty = process.stdout.isTTY === true;
  let draw: (width: number) => string = (w) => renderUnreachable("no answer yet", undefined, { url, at: Date.now(), width: w });
  const show = () => {
    const text = draw(width());
    // On a terminal: home, each line cleared to its end, the rest of the screen cleared (no flicker, no scroll).
    process.stdout.write(tty ? `\x1b[H${text.replace(/\n/g, "\x1b[K\n")}\x1b[J` : `${text}\n`);
  };
  if (tty) {
    process.stdout.write(ENTER);
    process.on("exit", () => process.stdout.write(LEAVE));
    process.stdout.on("resize", show);
  }
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => process.exit(0));

  let previous: Scrape | undefined;
  let lastAnswer: number | undefined;
  for (;;) {
    const started = Date.now();
    const current = await scrape(url);
    if ("problem" in current) {
      const at = Date.now();
      const since = lastAnswer;
      draw = (w) => renderUnreachable(current.problem, since, { url, at, width: w });
      // Rates across an outage (perhaps a restart) would mislead: the next answer starts them afresh.
      previous = undefined;
    } else {
      const view = viewOf(previous, current);
      draw = (w) => renderView(view, { url, at: current.at, width: w } satisfies Frame);
      previous = current;
      lastAnswer = current.at;
    }
    show();
    await Bun.sleep(Math.max(0, started + INTERVAL_MS - Date.now()));
  }
}
