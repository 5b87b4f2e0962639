/**
 * The container log source end to end: files written exactly as dockerd (and containerd) write them, while the
 * agent reads them, rotates, and gets killed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { tempDir, waitFor } from "./support/journal.ts";
import { readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, coverage, range } from "./support/config.ts";
import { ContainerWriter } from "./support/docker-writer.ts";
import { writeDockerConfig } from "./support/docker-config.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

const line = (seq: number, pad = 120) => `seq=${seq} ${"x".repeat(pad)}`;
const seqOf = (r: Record<string, unknown>) => Number(/^seq=(\d+)/.exec(String(r.log))?.[1] ?? -1);
function byContainer(records: Record<string, unknown>[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const r of records) out.set(String(r.container_id), [...(out.get(String(r.container_id)) ?? []), seqOf(r)]);
  return out;
}

describe("docker json-file", () => {
  test("every line arrives once, in order per container, with metadata; new containers are found", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const a = new ContainerWriter({ root, name: "web", image: "nginx:1.25", labels: { team: "edge" } });
    a.writeMany(range(1, 500).map((s) => line(s)));
    const agent = new RunningAgent(writeDockerConfig({ dir, root }));
    const out = join(dir, "out.jsonl");
    await waitFor("500 records", () => readJsonLines(out).length >= 500, 20_000);
    const b = new ContainerWriter({ root, name: "db", image: "postgres:16" });
    b.writeMany(range(1, 300).map((s) => line(s)), "stderr");
    a.writeMany(range(501, 200).map((s) => line(s)));
    await waitFor("1000 records", () => readJsonLines(out).length >= 1000, 20_000);
    expect(await agent.stop()).toBe(0);
    const records = readJsonLines(out);
    const per = byContainer(records);
    expect(per.get(a.id)).toEqual(range(1, 700));
    expect(per.get(b.id)).toEqual(range(1, 300));
    const first = records.find((r) => r.container_id === a.id)!;
    expect(first).toMatchObject({ stream: "stdout", container_name: "web", image: "nginx:1.25", labels: { team: "edge" } });
    expect(String(first.time)).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(records.find((r) => r.container_id === b.id)!.stream).toBe("stderr");
  });

  test("lines of 40 KB are merged from 16 KiB pieces; a 2 MB line is cut at max_line_bytes and marked", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const w = new ContainerWriter({ root });
    const big = `seq=2 ${"y".repeat(2_000_000)}`;
    w.write(line(1, 40_000));
    w.write(big);
    w.write(line(3));
    const agent = new RunningAgent(writeDockerConfig({ dir, root, source: { max_line_bytes: "1MiB" } }));
    const out = join(dir, "out.jsonl");
    await waitFor("3 records", () => readJsonLines(out).length >= 3, 20_000);
    expect(await agent.stop()).toBe(0);
    const [r1, r2, r3] = readJsonLines(out);
    expect(String(r1!.log)).toBe(line(1, 40_000));
    expect(r1!._nagare_truncated).toBeUndefined();
    expect(String(r2!.log).length).toBe(1024 * 1024);
    expect(String(r2!.log)).toBe(big.slice(0, 1024 * 1024));
    expect(r2!._nagare_truncated).toBe(true);
    expect(String(r3!.log)).toBe(line(3));
  });

  test("corrupt lines are shipped with _nagare_error and never stop the file", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const w = new ContainerWriter({ root });
    w.write(line(1));
    w.writeRaw('{"log":"half a line\n');
    w.writeRaw("not json at all\n");
    w.write(line(2));
    const agent = new RunningAgent(writeDockerConfig({ dir, root }));
    const out = join(dir, "out.jsonl");
    await waitFor("4 records", () => readJsonLines(out).length >= 4, 20_000);
    expect(await agent.stop()).toBe(0);
    const records = readJsonLines(out);
    expect(records.map(seqOf)).toEqual([1, -1, -1, 2]);
    expect(records[1]!._nagare_error).toBeTruthy();
    expect(records[2]!.log).toBe("not json at all");
  });

  test("rotation by rename and copytruncate: nothing written before the rotation is lost", async () => {
    for (const rotation of ["rename", "copytruncate"] as const) {
      const dir = caseDir();
      const root = join(dir, "containers");
      const w = new ContainerWriter({ root, maxSize: 20_000, maxFiles: 3, rotation });
      const agent = new RunningAgent(writeDockerConfig({ dir, root }));
      const out = join(dir, "out.jsonl");
      for (let s = 1; s <= 2000; s += 100) {
        w.writeMany(range(s, 100).map((x) => line(x)));
        await waitFor(`${s + 99} records (${rotation})`, () => coverage(readJsonLines(out).map(seqOf), 1, s + 99).missing.length === 0, 20_000);
      }
      expect(await agent.stop()).toBe(0);
      expect(w.rotations).toBeGreaterThan(5);
      const seqs = readJsonLines(out).map(seqOf);
      expect(coverage(seqs, 1, 2000)).toEqual({ missing: [], duplicates: 0 });
      expect(seqs).toEqual(range(1, 2000));
    }
  }, 60_000);
});

describe("CRI", () => {
  test("P pieces are merged into one record; F lines are records of their own", async () => {
    const dir = caseDir();
    const root = join(dir, "pods");
    const w = new ContainerWriter({ root, format: "cri", criMaxLineBytes: 1000 });
    w.write(line(1, 5000));
    w.write(line(2));
    const agent = new RunningAgent(writeDockerConfig({ dir, root, include: [`${root}/*/*.log`] }));
    const out = join(dir, "out.jsonl");
    await waitFor("2 records", () => readJsonLines(out).length >= 2, 20_000);
    expect(await agent.stop()).toBe(0);
    const records = readJsonLines(out);
    expect(records.map((r) => String(r.log))).toEqual([line(1, 5000), line(2)]);
  });
});

describe("crashes and scale", () => {
  // KNOWN BUG (open; see the closing note of issue 4): with containers rotating every ~1,400 lines while the agent
  // is killed and restarted, lines are lost. Observed with one container: after the first kill the saved position
  // pointed at the END of the rotated file `.2` (offset 198479) while the file sink's output held only lines up to
  // 2000, i.e. the checkpoint was ahead of what the output contained. Graceful restarts with rotations in between
  // lose nothing (tested above and in the rotation test). Remove `.todo` to reproduce; until fixed, the docker
  // source is not part of the embedded default.
  test.todo("SIGKILL three times during rotation-heavy writing: no loss, duplicates within one buffer per kill", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const writers = [0, 1, 2].map(() => new ContainerWriter({ root, maxSize: 200_000, maxFiles: 5 }));
    const MAX_BYTES = 2 * 1024 * 1024;
    const config = writeDockerConfig({ dir, root, maxBytes: String(MAX_BYTES) });
    const out = join(dir, "out.jsonl");
    const PER = 12_000;
    let written = 0;
    const writeSome = (n: number) => {
      for (const w of writers) w.writeMany(range(written + 1, n).map((s) => line(s)));
      written += n;
    };
    for (let kill = 0; kill < 3; kill++) {
      const agent = new RunningAgent(config);
      writeSome(2000);
      const target = readJsonLines(out).length + 1500;
      await waitFor("progress", () => readJsonLines(out).length >= target, 30_000);
      writeSome(2000);
      agent.kill("SIGKILL");
      await agent.exited;
    }
    writeSome(PER - written);
    const agent = new RunningAgent(config);
    await waitFor("everything", () => {
      const per = byContainer(readJsonLines(out));
      return writers.every((w) => coverage(per.get(w.id) ?? [], 1, PER).missing.length === 0);
    }, 60_000);
    expect(await agent.stop()).toBe(0);
    const per = byContainer(readJsonLines(out));
    let duplicates = 0;
    for (const w of writers) {
      const c = coverage(per.get(w.id) ?? [], 1, PER);
      expect(c.missing).toEqual([]);
      duplicates += c.duplicates;
      const seqs = per.get(w.id)!;
      let breaks = 0;
      for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) breaks++;
      expect(breaks).toBeLessThanOrEqual(3);
    }
    const perBuffer = Math.ceil((MAX_BYTES + 512 * 1024) / (2 * 130 + 600));
    console.log(`docker crash test: 3 containers x ${PER} lines, rotations ${writers.map((w) => w.rotations).join("/")}, 3 kills, ${duplicates} duplicates (allowed 3 x ${perBuffer})`);
    expect(duplicates).toBeLessThanOrEqual(3 * perBuffer);
  }, 180_000);

  test("500 containers with max_open_files 100: no loss, open descriptors never above the bound", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const writers = Array.from({ length: 500 }, () => new ContainerWriter({ root }));
    for (const w of writers) w.writeMany(range(1, 20).map((s) => line(s, 40)));
    const agent = new RunningAgent(writeDockerConfig({ dir, root, source: { max_open_files: 100 } }));
    const out = join(dir, "out.jsonl");
    let maxLogFds = 0;
    const logFds = () => {
      let n = 0;
      for (const fd of readdirSync(`/proc/${agent.pid}/fd`)) {
        try {
          if (require("node:fs").readlinkSync(`/proc/${agent.pid}/fd/${fd}`).endsWith("-json.log")) n++;
        } catch {
          // closed meanwhile
        }
      }
      return n;
    };
    await waitFor("10,000 records", () => {
      maxLogFds = Math.max(maxLogFds, logFds());
      return readJsonLines(out).length >= 10_000;
    }, 60_000);
    for (const w of writers) w.writeMany(range(21, 5).map((s) => line(s, 40)));
    await waitFor("12,500 records", () => {
      maxLogFds = Math.max(maxLogFds, logFds());
      return readJsonLines(out).length >= 12_500;
    }, 60_000);
    expect(await agent.stop()).toBe(0);
    const per = byContainer(readJsonLines(out));
    for (const w of writers) expect(per.get(w.id)).toEqual(range(1, 25));
    console.log(`500 containers: at most ${maxLogFds} log files open (bound 100)`);
    expect(maxLogFds).toBeLessThanOrEqual(100);
  }, 120_000);
});
