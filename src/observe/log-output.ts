/**
 * Where the agent's own log lines go: a file descriptor (stderr) written without ever blocking the event loop.
 *
 * Under systemd, stderr is a socket to journald; when journald stalls, the socket fills, and a blocking write
 * would stop the whole agent — reading, shipping and acknowledging — for as long as journald is stuck. So lines
 * are written with non-blocking writes; what the descriptor does not take waits in a queue of at most
 * `maxBytes`, in order, and is retried on a timer. Lines that do not fit are dropped and counted, and once the
 * output takes lines again, a WARN line in their place says how many are missing. On exit (process.exit or the
 * natural end) the queue is flushed synchronously for a bounded time, so the last lines before an exit are
 * not lost when the reader is merely slow.
 *
 * Non-blocking mode: Bun switches a pipe or socket stderr to O_NONBLOCK when `process.stderr` is first used
 * (a terminal stays blocking), so touching it is enough; the writes themselves bypass Bun's stream, whose
 * buffer is unbounded and is discarded by process.exit. Writes to regular files never wait for a reader.
 */
import { fstatSync, writevSync } from "node:fs";

const MAX_QUEUED_BYTES = 1 << 20;
/** How often a full output is tried again: cheap (one failing syscall), and short enough to keep order snappy. */
const RETRY_MS = 20;
const EXIT_FLUSH_MS = 2000;
/** Buffers handed to one writev (Linux's IOV_MAX is 1024). */
const MAX_IOV = 256;

const outputs = new Map<number, LogOutput>();
let exitHookInstalled = false;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

export class LogOutput {
  /** Lines dropped since the process started, on every output: `nagare_log_dropped_lines_total`. */
  static droppedLines = 0;

  private queue: Buffer[] = [];
  /** Bytes of queue[0] already written. */
  private offset = 0;
  private queuedBytes = 0;
  /** Lines dropped since the last notice, and when the last of them was dropped (the notice's time stamp). */
  private dropped = 0;
  private lastDropAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The descriptor failed for good (closed, or its reader went away): lines are only counted. */
  private broken = false;

  private constructor(
    readonly fd: number,
    private readonly maxBytes: number,
    /** What the descriptor referred to when this output was made: a closed number may be reused for another file. */
    private readonly identity: string,
  ) {
    if (fd === 2) void process.stderr;
  }

  /** The output of `fd`, shared by every logger writing to it so their lines keep one order. */
  static of(fd: number, maxBytes = MAX_QUEUED_BYTES): LogOutput {
    let output = outputs.get(fd);
    const identity = identityOf(fd);
    if (output === undefined || output.broken || output.identity !== identity) {
      output?.close();
      output = new LogOutput(fd, maxBytes, identity);
      outputs.set(fd, output);
    }
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on("exit", () => {
        for (const o of outputs.values()) o.flushSync(EXIT_FLUSH_MS);
      });
    }
    return output;
  }

  /** Bytes waiting to be written. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  write(line: string): void {
    const bytes = Buffer.from(line);
    if (this.broken || (this.queue.length > 0 && this.queuedBytes + bytes.length > this.maxBytes)) {
      this.dropped++;
      this.lastDropAt = Date.now();
      LogOutput.droppedLines++;
      return;
    }
    if (this.dropped > 0) this.enqueue(this.dropNotice());
    this.enqueue(bytes);
    if (this.timer === undefined) this.drain();
  }

  /**
   * Stops writing to the descriptor, for an owner about to close it (a log file of its own): what is still
   * queued is dropped and counted, and no retry will touch the descriptor number after it is reused.
   */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    LogOutput.droppedLines += this.queue.length;
    this.queue = [];
    this.offset = 0;
    this.queuedBytes = 0;
    this.broken = true;
    if (outputs.get(this.fd) === this) outputs.delete(this.fd);
  }

  /** Writes until the queue is empty or `ms` passed, waiting (blocking) while the descriptor is full. */
  flushSync(ms: number): boolean {
    clearTimeout(this.timer);
    this.timer = undefined;
    const deadline = performance.now() + ms;
    while (!this.drain()) {
      if (performance.now() >= deadline) return false;
      Atomics.wait(sleeper, 0, 0, 5);
    }
    return true;
  }

  /** Writes what the descriptor takes now; true when nothing is left. A full descriptor is retried later. */
  private drain(): boolean {
    for (;;) {
      if (this.queue.length === 0) {
        if (this.dropped === 0 || this.broken) return true;
        this.enqueue(this.dropNotice());
      }
      const iov = this.queue.slice(0, MAX_IOV);
      if (this.offset > 0) iov[0] = iov[0]!.subarray(this.offset);
      let written: number;
      try {
        written = writevSync(this.fd, iov);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") {
          this.retryLater();
          return false;
        }
        // The output is closed or its reader gone (EBADF, EPIPE): the agent must keep shipping; its log is
        // best effort from here on.
        this.broken = true;
        LogOutput.droppedLines += this.queue.length;
        this.queue = [];
        this.offset = 0;
        this.queuedBytes = 0;
        return true;
      }
      this.consume(written);
    }
  }

  private enqueue(bytes: Buffer): void {
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
  }

  private consume(written: number): void {
    this.queuedBytes -= written;
    let done = 0;
    let left = written + this.offset;
    while (done < this.queue.length && left >= this.queue[done]!.length) left -= this.queue[done++]!.length;
    this.queue.splice(0, done);
    this.offset = left;
  }

  private retryLater(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.drain();
    }, RETRY_MS);
    this.timer.unref?.();
  }

  private dropNotice(): Buffer {
    const n = this.dropped;
    this.dropped = 0;
    const msg = `The agent's own log dropped ${n} line(s) here because its output was not being read and ${this.maxBytes} bytes of lines were already waiting; records were not affected.`;
    // Stamped with the last drop: every line before the notice was logged before it, every line after it later.
    return Buffer.from(`${JSON.stringify({ ts: new Date(this.lastDropAt).toISOString(), level: "warn", msg, dropped_lines: n })}\n`);
  }
}

function identityOf(fd: number): string {
  try {
    const st = fstatSync(fd);
    return `${st.dev}:${st.ino}`;
  } catch {
    return "closed";
  }
}
