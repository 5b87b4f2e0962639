/** Running the agent under test as a real process: the CLI from source (or the built binary), its log, its kill. */
import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { waitFor } from "./util.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const BUN = join(ROOT, "node_modules", ".bin", "bun");
export const CLI = [BUN, join(ROOT, "src", "cli.ts")];

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one CLI command to completion (30 s at most). */
export async function runCli(args: string[], env: Record<string, string> = {}, command = CLI): Promise<CliResult> {
  const proc = Bun.spawn([...command, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const alive = new Set<RunningAgent>();
// An agent left behind by a failed test must not hold ports or journals for the next one. `bun test` does not
// emit "exit", so the agent also gets SIGKILL when the test process dies (util-linux's setpriv: the parent-death
// signal; setpriv execs the agent, so its pid is the agent's).
process.on("exit", () => {
  for (const agent of alive) agent.kill("SIGKILL");
});
const PDEATHSIG = Bun.which("setpriv") ? ["setpriv", "--pdeathsig", "KILL", "--"] : [];

/** A running `nagare run`; its stderr (the agent's JSON log) is collected in `log`. */
export class RunningAgent {
  readonly log: string[] = [];
  private readonly proc: Subprocess<"ignore", "pipe" | "inherit" | "ignore", "pipe">;
  private readonly logDone: Promise<void>;

  /** `configPath` "" runs without -c (the default config). */
  constructor(configPath: string, options: { env?: Record<string, string>; stdout?: "pipe" | "ignore"; command?: string[] } = {}) {
    const args = configPath === "" ? ["run"] : ["run", "-c", configPath];
    this.proc = Bun.spawn([...PDEATHSIG, ...(options.command ?? CLI), ...args], {
      env: { ...process.env, ...options.env },
      stdin: "ignore",
      stdout: options.stdout ?? "ignore",
      stderr: "pipe",
    }) as Subprocess<"ignore", "pipe" | "ignore", "pipe">;
    this.logDone = this.collect();
    alive.add(this);
    void this.proc.exited.then(() => alive.delete(this));
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** The exit status, once the agent's log is read to its end: entries() is complete when this resolves. */
  get exited(): Promise<number> {
    return this.proc.exited.then(async (code) => {
      await this.logDone;
      return code;
    });
  }

  get stdout(): ReadableStream<Uint8Array> {
    return this.proc.stdout as ReadableStream<Uint8Array>;
  }

  /** Log entries parsed from the agent's stderr. */
  entries(): { level: string; msg: string; [k: string]: unknown }[] {
    return this.log.flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [{ level: "raw", msg: line }];
      }
    });
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.proc.kill(signal);
  }

  /** Sends SIGTERM and waits (bounded) for the exit status. */
  async stop(timeoutMs = 30_000): Promise<number> {
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), timeoutMs);
    const code = await this.proc.exited;
    clearTimeout(timer);
    await this.logDone;
    return code;
  }

  private async collect(): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of this.proc.stderr) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      this.log.push(...lines.filter((l) => l !== ""));
    }
  }
}

/** JSON lines of a file sink's output; a torn last line (the agent was killed mid-write) is ignored. */
export function readJsonLines(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // only possible for the very last line of a killed writer; counted by the caller through totals
    }
  }
  return out;
}

/** Lines in a file (0 when it does not exist), counted in 4 MiB reads without decoding: cheap enough to poll. */
export function countLines(path: string): number {
  if (!existsSync(path)) return 0;
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  let n = 0;
  try {
    for (;;) {
      const got = readSync(fd, buf, 0, buf.length, null);
      if (got === 0) break;
      const chunk = got === buf.length ? buf : buf.subarray(0, got);
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) n++;
    }
  } finally {
    closeSync(fd);
  }
  return n;
}

/** The API's base URL, from the line the agent logs when it listens (the tests use port 0). */
export async function apiOf(agent: RunningAgent): Promise<string> {
  const line = await waitFor("the API to listen", () => agent.entries().find((e) => /The API listens on/.test(e.msg)), 20_000);
  return /http:\/\/[\d.]+:\d+/.exec(line!.msg)![0];
}

/**
 * POST /reload as an operator does: with the API token the agent wrote to data_dir (the file is named in the line
 * the agent logs when its API listens).
 */
export async function postReload(agent: RunningAgent, signal?: AbortSignal): Promise<Response> {
  const api = await apiOf(agent);
  const line = agent.entries().find((e) => /The API listens on/.test(e.msg))!.msg;
  return fetch(`${api}/reload`, { method: "POST", headers: reloadAuthorization(line), signal });
}

/** The Authorization header for POST /reload, from the agent's "The API listens on …" log line. */
export function reloadAuthorization(listening: string): { authorization: string } {
  const tokenFile = /with the token in (\S+)\)\.$/.exec(listening)![1]!;
  return { authorization: `Bearer ${readFileSync(tokenFile, "utf8").trim()}` };
}

/** One sample's value from Prometheus text (NaN when absent); `labels` as written inside the braces. */
export function metricValue(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`) || (labels === "" && l.startsWith(`${name} `)));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(" ") + 1));
}
