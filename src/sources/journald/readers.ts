/**
 * Where export-format bytes come from: a journalctl child process, a systemd-journal-gatewayd HTTP stream,
 * or a saved export file. Each reader is pull-based — nothing is read until `read()` is called — so a paused
 * source leaves the bytes in the pipe (journalctl blocks), in the socket, or in the file.
 */
import { open, type FileHandle } from "node:fs/promises";
import type { Subprocess } from "bun";
import { NagareError } from "../../core/errors.ts";

export interface ExportReader {
  /** The next chunk, or null once the stream ended (process exited, connection closed, end of file). */
  read(): Promise<Uint8Array | null>;
  /** Ends the stream and releases the process, connection or file. Idempotent. */
  close(): Promise<void>;
  /** Why the stream ended, once `read()` returned null; undefined for a clean end of a file. */
  readonly failure: string | undefined;
}

/** The part of a web-streams reader the readers use (Bun's and the DOM typings disagree on the rest). */
export interface ChunkReader {
  read(): Promise<{ value?: Uint8Array; done: boolean }>;
  cancel(): Promise<void>;
}

export interface JournalctlOptions {
  program: string;
  directory: string | undefined;
  matches: readonly string[];
  /** Start AT this cursor's entry (the caller drops it if it is still there); otherwise at the head. */
  cursor: string | undefined;
}

/**
 * The journalctl command line. `--merge` matters: without it, --follow reads only the current boot and a
 * cursor in an earlier boot silently skips to this one. `--no-tail` matters too: --follow alone starts at the
 * last 10 entries. `--cursor` prints the cursor's own entry first, and seeks to the next entry when it was
 * vacuumed — unlike `--after-cursor`, which would then skip a real entry.
 */
function journalctlArgs(o: JournalctlOptions): string[] {
  const args = [o.program, "--output=export", "--all", "--follow", "--merge", "--no-pager", "--no-tail"];
  if (o.directory !== undefined) args.push(`--directory=${o.directory}`);
  if (o.cursor !== undefined) args.push(`--cursor=${o.cursor}`);
  args.push(...o.matches);
  return args;
}

/** What `journalctl -n 0 --show-cursor` said: the newest entry's cursor, or its words for why there is none. */
export interface JournalProbe {
  /** The newest entry's cursor; undefined for an empty or unreadable journal. */
  cursor: string | undefined;
  /** journalctl's exit status (null when it was killed). */
  status: number | null;
  /** Its standard output and error together: access.ts reads the reasons from them. */
  output: string;
  /** It did not finish within the timeout and was killed. */
  timedOut: boolean;
}

/** The probe's command line. Not -o export: journalctl then keeps the hint about entries it may not show to itself. */
export function probeArgs(o: Omit<JournalctlOptions, "cursor">): string[] {
  const args = [o.program, "--merge", "--lines=0", "--show-cursor", "--no-pager"];
  if (o.directory !== undefined) args.push(`--directory=${o.directory}`);
  args.push(...o.matches);
  return args;
}

/**
 * Asks journalctl for the cursor of the newest entry before each reader starts. "Start at the tail" then
 * means: follow from this cursor and drop its entry (`--lines=0 --follow` races with journal files that appear
 * after it started). It also tells, in journalctl's own words, whether the agent may read the journal at all:
 * the following reader, with -o export, stays silent about files it may not read (see access.ts).
 */
export async function probeJournal(o: Omit<JournalctlOptions, "cursor">, timeoutMs: number): Promise<JournalProbe> {
  const proc = Bun.spawn(probeArgs(o), { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, SYSTEMD_COLORS: "0", LC_ALL: "C" } });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  const [out, err, status] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { cursor: /^-- cursor: (.+)$/m.exec(out)?.[1], status: timedOut ? null : status, output: `${err}${out}`, timedOut };
}

/**
 * journalctl writes through stdio's 4 KiB buffer, so a reader gets thousands of tiny chunks per second and
 * spends more time per chunk than per entry. `stdbuf -o256K` (coreutils; it execs journalctl, keeping the pid)
 * makes the chunks large; journalctl still flushes whenever it waits for new entries, so following stays
 * immediate. Without stdbuf, journalctl runs as is.
 */
const STDBUF = Bun.which("stdbuf");

function withLargeOutputBuffer(args: string[]): string[] {
  return STDBUF === null ? args : [STDBUF, "-o256K", ...args];
}

/** journalctl's stderr lines that mean its view of the journal is broken and it must be restarted. */
const FATAL_STDERR = /Bad message|Failed to (?:iterate|seek|get)/;

export class JournalctlReader implements ExportReader {
  failure: string | undefined;
  private readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  private readonly stdout: ChunkReader;
  private stderrTail = "";
  private closed = false;

  constructor(options: JournalctlOptions, private readonly onStderr: (line: string) => void) {
    const args = withLargeOutputBuffer(journalctlArgs(options));
    try {
      this.proc = Bun.spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, SYSTEMD_COLORS: "0", LC_ALL: "C" } });
    } catch (err) {
      throw new NagareError("SOURCE_FAILED", `cannot start ${options.program}`, { cause: err, retryable: true });
    }
    this.stdout = this.proc.stdout.getReader();
    void this.watchStderr();
  }

  get pid(): number {
    return this.proc.pid;
  }

  async read(): Promise<Uint8Array | null> {
    const { value, done } = await this.stdout.read();
    if (!done && value !== undefined) return value;
    if (!this.closed) {
      const status = await this.proc.exited;
      this.failure ??= `journalctl exited with status ${status}${this.stderrTail ? `: ${this.stderrTail}` : ""}`;
    }
    return null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.proc.kill("SIGTERM");
    const exited = await Promise.race([this.proc.exited, Bun.sleep(2000).then(() => "timeout" as const)]);
    if (exited === "timeout") {
      this.proc.kill("SIGKILL");
      await this.proc.exited;
    }
    await this.stdout.cancel().catch(() => undefined);
  }

  private async watchStderr(): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of this.proc.stderr) {
      pending += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (line === "") continue;
        this.stderrTail = line;
        this.onStderr(line);
        if (FATAL_STDERR.test(line) && !this.closed) {
          this.failure = `journalctl reported "${line}"`;
          this.proc.kill("SIGTERM");
        }
      }
      if (pending.length > 4096) pending = pending.slice(-4096);
    }
  }
}

/** A saved export stream, read once from `offset` to its end. */
export class ExportFileReader implements ExportReader {
  readonly failure = undefined;
  private position: number;

  private constructor(private readonly file: FileHandle, offset: number, readonly identity: FileIdentity) {
    this.position = offset;
  }

  static async open(path: string, offset: number): Promise<ExportFileReader> {
    const file = await open(path, "r");
    const st = await file.stat();
    return new ExportFileReader(file, offset, { path, dev: st.dev, ino: st.ino, size: st.size });
  }

  async read(): Promise<Uint8Array | null> {
    const chunk = Buffer.allocUnsafe(256 * 1024);
    const { bytesRead } = await this.file.read(chunk, 0, chunk.length, this.position);
    if (bytesRead === 0) return null;
    this.position += bytesRead;
    return chunk.subarray(0, bytesRead);
  }

  async close(): Promise<void> {
    await this.file.close().catch(() => undefined);
  }
}

export interface FileIdentity {
  path: string;
  dev: number;
  ino: number;
  size: number;
}
