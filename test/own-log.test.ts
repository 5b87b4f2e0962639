/**
 * The agent's own log never blocks the event loop: when nobody reads stderr (a stalled journald), lines wait
 * in a bounded queue, the rest are dropped and counted, records keep flowing, and once stderr is read again a
 * line says how many were dropped. Order is kept and no line is torn.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, constants, mkdirSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { LogOutput } from "../src/observe/log-output.ts";
import { BUN, countLines, metricValue, reloadAuthorization, ROOT } from "./support/agent.ts";
import { writeAgentConfig } from "./support/config.ts";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function mkfifo(path: string): void {
  const r = Bun.spawnSync(["mkfifo", path]);
  if (r.exitCode !== 0) throw new Error(`mkfifo ${path} failed: ${r.stderr.toString()}`);
}

/** Collects the whole lines a non-blocking FIFO holds, each time it is polled; notes EOF. */
class FifoReader {
  readonly lines: string[] = [];
  private pending = "";
  private readonly buf = Buffer.allocUnsafe(1 << 20);
  eof = false;
  constructor(readonly fd: number) {}

  poll(): void {
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") return;
        throw err;
      }
      if (n === 0) {
        this.eof = true;
        return;
      }
      this.pending += this.buf.toString("utf8", 0, n);
      const parts = this.pending.split("\n");
      this.pending = parts.pop() ?? "";
      this.lines.push(...parts);
    }
  }

  entries(): { ts: string; level: string; msg: string; [k: string]: unknown }[] {
    return this.lines.map((l) => JSON.parse(l));
  }
}

describe("log output", () => {
  test("a full output: lines wait in order up to the bound, the rest are dropped and counted, then a notice says how many", async () => {
    const fifo = join(tmp.path, "unit.fifo");
    mkfifo(fifo);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const output = LogOutput.of(fd, 16 * 1024);
    try {
      const droppedBefore = LogOutput.droppedLines;
      const total = 2000;
      for (let i = 0; i < total; i++) output.write(`${JSON.stringify({ n: i, pad: "p".repeat(80) })}\n`);
      const dropped = LogOutput.droppedLines - droppedBefore;
      expect(dropped).toBeGreaterThan(0);
      expect(output.pendingBytes).toBeGreaterThan(0);
      expect(output.pendingBytes).toBeLessThanOrEqual(16 * 1024);
      // Still full: an exit flush gives up after its bound instead of hanging.
      const started = performance.now();
      expect(output.flushSync(100)).toBe(false);
      expect(performance.now() - started).toBeLessThan(2000);

      const reader = new FifoReader(fd);
      await waitFor("the drop notice", () => {
        reader.poll();
        return reader.lines.some((l) => l.includes("dropped_lines"));
      });
      const entries = reader.entries();
      const written = entries.filter((e) => "n" in e).map((e) => e.n);
      expect(written).toEqual(Array.from({ length: total - dropped }, (_, i) => i));
      expect(entries.at(-1)).toMatchObject({ level: "warn", dropped_lines: dropped });
      expect(output.pendingBytes).toBe(0);
    } finally {
      output.close();
      closeSync(fd);
    }
  });
});

describe("an agent whose stderr nobody reads", () => {
  test("keeps answering and shipping records; once stderr is read, the dropped lines are reported and the rest is in order", async () => {
    const dir = join(tmp.path, "agent");
    mkdirSync(dir);
    const journal = join(dir, "journal");
    const out = join(dir, "out.jsonl");
    await writeJournal(journal, sequenceEntries(1, 10));
    const valid = {
      api: "127.0.0.1:0",
      sources: { journal: { type: "journald", directory: journal, start_at: "head" } },
      sinks: { out: { type: "file", inputs: ["journal"], path: out } },
    };
    const config = writeAgentConfig(dir, valid);
    // Read non-blocking by the test; the agent's end is an ordinary blocking descriptor, as journald's socket is.
    const fifo = join(dir, "stderr.fifo");
    mkfifo(fifo);
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writeFd = openSync(fifo, constants.O_WRONLY);
    const setpriv = Bun.which("setpriv") ? ["setpriv", "--pdeathsig", "KILL", "--"] : [];
    const proc = Bun.spawn([...setpriv, BUN, join(ROOT, "src", "cli.ts"), "run", "-c", config], { stdin: "ignore", stdout: "ignore", stderr: writeFd });
    closeSync(writeFd);
    const reader = new FifoReader(readFd);
    try {
      const listening = await waitFor("the API to listen", () => {
        reader.poll();
        return reader.entries().find((e) => /The API listens on/.test(e.msg));
      });
      const api = /http:\/\/[\d.]+:\d+/.exec(listening!.msg)![0];
      await waitFor("the first 10 records", () => countLines(out) === 10);

      // From here on nobody reads stderr. Each refused reload logs one long ERROR line (4000 problems).
      const broken = { ...valid, sinks: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`s${i}`, { type: "file" }])) };
      writeAgentConfig(dir, broken);
      const dropped = async () => metricValue(await (await fetch(`${api}/metrics`, { signal: AbortSignal.timeout(10_000) })).text(), "nagare_log_dropped_lines_total", "");
      let reloads = 0;
      while ((await dropped()) === 0) {
        const r = await fetch(`${api}/reload`, { method: "POST", headers: reloadAuthorization(listening!.msg), signal: AbortSignal.timeout(10_000) });
        expect(r.status).toBe(422);
        expect(++reloads).toBeLessThan(200);
      }

      await writeJournal(journal, sequenceEntries(11, 20_000));
      await waitFor("all 20010 records shipped while stderr is full", () => countLines(out) === 20_010, 120_000);
      const notices = () => reader.entries().filter((e) => e.dropped_lines !== undefined);
      const noticed = () => notices().reduce((n, e) => n + Number(e.dropped_lines), 0);
      expect(noticed()).toBe(0);

      await waitFor("a drop notice once stderr is read", () => {
        reader.poll();
        return notices().length > 0;
      });
      const total = await dropped();
      expect(total).toBeGreaterThan(0);
      await waitFor("notices covering every dropped line", () => {
        reader.poll();
        return noticed() === total;
      });

      proc.kill("SIGTERM");
      await waitFor("the agent's exit and the end of its stderr", () => {
        reader.poll();
        return reader.eof;
      }, 30_000);
      expect(await proc.exited).toBe(0);
      const entries = reader.entries();
      expect(entries.at(-1)!.msg).toContain("nagare stopped after reading 20010 record(s)");
      const times = entries.map((e) => Date.parse(e.ts));
      expect(times.every((t, i) => i === 0 || t >= times[i - 1]!)).toBe(true);
      expect(entries.filter((e) => /reloaded config .* is invalid/.test(e.msg)).length).toBeLessThan(reloads);
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
      closeSync(readFd);
    }
  }, 180_000);
});
