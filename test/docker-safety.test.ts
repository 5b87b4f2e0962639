/**
 * The docker source on a real host: planted links are not followed out of the log directories (with the agent
 * holding CAP_DAC_READ_SEARCH, as its systemd unit does), a line of many MiB without a newline is one cut record
 * in bounded memory and resumes exactly, and the positions of deleted files do not pile up.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chownSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, CLI, metricValue, readJsonLines, RunningAgent } from "./support/agent.ts";
import { caseDirs, range, writeAgentConfig } from "./support/config.ts";
import { CheckpointStore } from "../src/core/checkpoint-store.ts";
import type { ContainerPositions } from "../src/sources/docker/position.ts";
import { decodeLongLine, PartialMerger } from "../src/sources/docker/codec.ts";
import { FileGuard, type Refusal } from "../src/sources/docker/guard.ts";
import { LongLine } from "../src/sources/docker/long-line.ts";
import { ContainerWriter, criEntry, formatGoTime, jsonFileEntry } from "./support/docker-writer.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

const MiB = 1024 * 1024;
const line = (seq: number) => `seq=${seq} ${"x".repeat(60)}`;
const seqOf = (r: Record<string, unknown>) => Number(/^seq=(\d+)/.exec(String(r.log))?.[1] ?? -1);

function savedPositions(dir: string): ContainerPositions["containers"] {
  return (new CheckpointStore(join(dir, "data")).list()[0]?.checkpoint?.position as ContainerPositions | undefined)?.containers ?? {};
}

async function metrics(api: string): Promise<string> {
  return (await fetch(`${api}/metrics`)).text();
}

/** A docker source and a file sink, with the API on (the tests read the source's metrics). */
function dockerConfig(dir: string, include: string[], source: Record<string, unknown> = {}, out = join(dir, "out.jsonl")): string {
  return writeAgentConfig(dir, {
    api: "127.0.0.1:0",
    sources: { containers: { type: "docker", include, rescan_interval: "200ms", poll_interval: "50ms", ...source } },
    sinks: { out: { type: "file", inputs: ["containers"], path: out } },
  });
}

describe("links", () => {
  // The agent runs as nobody, with CAP_DAC_READ_SEARCH in its ambient set: it can read any file on the host, as
  // the installed unit can. Three links lead to a 0600 root file: a container's log file, a kubelet-style flat
  // link, and a rotated sibling (`.1`) planted next to a real container's log.
  const AS_NOBODY_WITH_DAC_READ_SEARCH = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search", "--"];
  const NOBODY = 65534;

  test("links to a root-only file are refused with a WARN each, even with CAP_DAC_READ_SEARCH; kubelet's links into allowed_link_targets are read", async () => {
    const dir = caseDir();
    const root = join(dir, "logs");
    const secretDir = join(dir, "secret");
    mkdirSync(secretDir, { mode: 0o700 });
    const secret = join(secretDir, "shadow");
    writeFileSync(secret, "root:$6$SECRET-HASH-4b1d:19000:0:99999:7:::\n", { mode: 0o600 });
    // The premise: the agent's user and capability can read it.
    const premise = Bun.spawnSync([...AS_NOBODY_WITH_DAC_READ_SEARCH, "cat", secret]);
    expect(premise.stdout.toString()).toContain("SECRET-HASH");

    const docker = join(root, "docker");
    const web = new ContainerWriter({ root: docker, name: "web" });
    web.writeMany(range(1, 20).map(line));
    symlinkSync(secret, `${web.path}.1`);
    const plantedId = "e".repeat(64);
    mkdirSync(join(docker, plantedId));
    const plantedDocker = join(docker, plantedId, `${plantedId}-json.log`);
    symlinkSync(secret, plantedDocker);

    const pod = new ContainerWriter({ root: join(root, "pods"), pod: { namespace: "shop", name: "api-0", container: "api" } });
    pod.writeMany(range(1, 30).map(line));
    const flat = join(root, "containers");
    mkdirSync(flat);
    const podId = "a".repeat(64);
    symlinkSync(pod.path, join(flat, `api-0_shop_api-${podId}.log`));
    const plantedFlat = join(flat, `evil-0_shop_evil-${"b".repeat(64)}.log`);
    symlinkSync(secret, plantedFlat);

    // Everything the agent writes lives in directories its user owns.
    const outDir = join(dir, "out");
    for (const d of [join(dir, "data"), outDir]) {
      mkdirSync(d);
      chownSync(d, NOBODY, NOBODY);
    }
    const out = join(outDir, "out.jsonl");
    const config = dockerConfig(dir, [`${docker}/*/*-json.log`, `${flat}/*.log`], { allowed_link_targets: [join(root, "pods")] }, out);
    const agent = new RunningAgent(config, { command: [...AS_NOBODY_WITH_DAC_READ_SEARCH, ...CLI] });
    const api = await apiOf(agent);
    const status = readFileSync(`/proc/${agent.pid}/status`, "utf8");
    expect(/^Uid:\s+(\d+)/m.exec(status)![1]).toBe(String(NOBODY));
    expect(BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)![1]}`) & 4n).toBe(4n); // CAP_DAC_READ_SEARCH is bit 2

    const refused = async () => metricValue(await metrics(api), "nagare_container_refused_files_total", 'source="containers"');
    await waitFor("the three planted links refused", async () => (await refused()) === 3, 20_000);
    await waitFor("every line of both containers", () => readJsonLines(out).length >= 50, 20_000);
    expect(await agent.stop()).toBe(0);

    const text = readFileSync(out, "utf8");
    expect(text).not.toContain("SECRET-HASH");
    const records = readJsonLines(out);
    expect(records.filter((r) => r.container_id === web.id).map(seqOf)).toEqual(range(1, 20));
    const podRecords = records.filter((r) => r.container_id === podId);
    expect(podRecords.map(seqOf)).toEqual(range(1, 30));
    expect(podRecords[0]).toMatchObject({ container_name: "api", pod_namespace: "shop", pod_name: "api-0" });
    expect(records.length).toBe(50);

    // (The start-up environment check's ERRORs about directories judged by access(2), which ignores capabilities, are not ours.)
    const warnings = agent.entries().filter((e) => e.level === "warn" && String(e.msg).startsWith("Source containers"));
    for (const e of warnings) console.log(`WARN: ${e.msg}`);
    expect(warnings.map((e) => e.path).sort()).toEqual([`${web.path}.1`, plantedDocker, plantedFlat].sort());
    for (const e of warnings) {
      expect(e.target).toBe(secret);
      expect(e.msg).toContain(String(e.path));
      expect(e.msg).toContain("outside the include directories and allowed_link_targets");
    }
    expect(agent.entries().filter((e) => e.level === "error" && !e.msg.startsWith("The environment is not ready:"))).toEqual([]);
  }, 60_000);

  test("the guard: regular files and links inside the allowed directories pass; links out, FIFOs and linked directories do not", async () => {
    const dir = caseDir();
    const base = join(dir, "base");
    const allowed = join(dir, "allowed");
    const outside = join(dir, "outside");
    for (const d of [base, allowed, outside]) mkdirSync(d);
    writeFileSync(join(base, "plain.log"), "a\n");
    writeFileSync(join(allowed, "target.log"), "b\n");
    writeFileSync(join(outside, "secret.log"), "c\n");
    symlinkSync(join(allowed, "target.log"), join(base, "to-allowed.log"));
    symlinkSync(join(base, "plain.log"), join(base, "to-sibling.log"));
    symlinkSync(join(outside, "secret.log"), join(base, "to-outside.log"));
    symlinkSync(outside, join(base, "linked-dir"));
    expect(Bun.spawnSync(["mkfifo", join(base, "fifo.log")]).exitCode).toBe(0);
    symlinkSync(join(base, "fifo.log"), join(base, "to-fifo.log"));
    const refusals: Refusal[] = [];
    const guard = new FileGuard([base, allowed], (r) => refusals.push(r));
    const read = async (name: string) => {
      const file = await guard.open(join(base, name));
      if (file === undefined) return undefined;
      const text = (await file.readFile()).toString();
      await file.close();
      return text;
    };
    expect(await read("plain.log")).toBe("a\n");
    expect(await read("to-allowed.log")).toBe("b\n");
    expect(await read("to-sibling.log")).toBe("a\n");
    expect(await read("missing.log")).toBeUndefined();
    expect(refusals).toEqual([]);
    expect(await read("to-outside.log")).toBeUndefined();
    expect(await read("linked-dir/secret.log")).toBeUndefined();
    expect(await read("fifo.log")).toBeUndefined();
    expect(await read("to-fifo.log")).toBeUndefined();
    expect(refusals.map((r) => [r.path.slice(base.length + 1), r.target.slice(dir.length + 1)])).toEqual([
      ["to-outside.log", "outside/secret.log"],
      ["linked-dir/secret.log", "outside/secret.log"],
      ["fifo.log", "base/fifo.log"],
      ["to-fifo.log", "base/fifo.log"],
    ]);
    expect(refusals[2]!.reason).toBe("it is not a regular file");
  });
});

describe("a physical line of 10 MiB without a newline", () => {
  const longText = `seq=2 ${"y".repeat(10 * MiB)}`;
  const time = formatGoTime(new Date("2024-05-06T07:08:09.123456789Z"));
  /** A json-file entry of one line of `bytes` bytes of "z" after its "seq=N ", built without a string that long. */
  const jsonFileLine = (seq: number, bytes: number, stream: string) =>
    Buffer.concat([Buffer.from(`{"log":"seq=${seq} `), Buffer.alloc(bytes, "z"), Buffer.from(`\\n","stream":"${stream}","time":"${time}"}\n`)]);

  test("json-file and CRI: one record, cut to max_line_bytes and marked, counted; every line after it arrives; memory does not grow with the line", async () => {
    const dir = caseDir();
    const root = join(dir, "logs");
    const docker = new ContainerWriter({ root: join(root, "docker") });
    const pod = new ContainerWriter({ root: join(root, "pods"), pod: { namespace: "shop", name: "web-0", container: "web" } });
    for (const w of [docker, pod]) w.write(line(1));
    const agent = new RunningAgent(dockerConfig(dir, [`${root}/docker/*/*-json.log`, `${root}/pods/*/*/*.log`], { max_line_bytes: "1MiB" }));
    const api = await apiOf(agent);
    const out = join(dir, "out.jsonl");
    await waitFor("the first line of each container", () => readJsonLines(out).length >= 2, 20_000);
    const hwmBefore = vmHwm(agent.pid);
    docker.writeRaw(Buffer.from(`{"log":"${longText}\\n","stream":"stderr","time":"${time}"}\n`));
    pod.writeRaw(Buffer.from(`${time} stdout F ${longText}\n`));
    for (const w of [docker, pod]) w.writeMany(range(3, 100).map(line));
    // And one of 96 MiB: held whole, it alone would raise the peak by more than the bound below.
    docker.writeRaw(jsonFileLine(103, 96 * MiB, "stdout"));
    docker.write(line(104));
    await waitFor("every record", () => readJsonLines(out).length >= 206, 30_000);
    const truncated = metricValue(await metrics(api), "nagare_container_truncated_lines_total", 'source="containers"');
    const hwmAfter = vmHwm(agent.pid);
    expect(await agent.stop()).toBe(0);

    const records = readJsonLines(out);
    expect(records.length).toBe(206);
    for (const [w, stream, last] of [[docker, "stderr", 104], [pod, "stdout", 102]] as const) {
      const mine = records.filter((r) => r.container_id === (w === docker ? w.id : w.path));
      expect(mine.map(seqOf)).toEqual(range(1, last));
      const cut = mine[1]!;
      expect(String(cut.log).length).toBe(MiB);
      expect(cut.log).toBe(longText.slice(0, MiB));
      expect(cut).toMatchObject({ stream, time, _nagare_truncated: true });
      expect(cut._nagare_error).toBeUndefined();
      expect(mine.filter((r) => r._nagare_truncated !== undefined).length).toBe(w === docker ? 2 : 1);
    }
    const huge = records.find((r) => seqOf(r) === 103)!;
    expect(huge.log).toBe(`seq=103 ${"z".repeat(MiB - 8)}`);
    expect(huge._nagare_truncated).toBe(true);
    expect(truncated).toBe(3);
    expect(agent.entries().filter((e) => e.level === "warn" || e.level === "error")).toEqual([]);
    const grew = hwmAfter - hwmBefore;
    console.log(`lines of 10, 10 and 96 MiB: peak RSS ${(hwmBefore / MiB).toFixed(1)} MiB before, ${(hwmAfter / MiB).toFixed(1)} MiB after`);
    expect(grew).toBeLessThan(48 * MiB);
  }, 60_000);

  test("SIGKILL in the middle of the line: after the restart it is one record, the lines after it all arrive, nothing twice", async () => {
    const dir = caseDir();
    const root = join(dir, "containers");
    const w = new ContainerWriter({ root });
    w.writeMany(range(1, 50).map(line));
    const config = dockerConfig(dir, [`${root}/*/*-json.log`], { max_line_bytes: "1MiB" });
    const out = join(dir, "out.jsonl");
    const savedAt = (offset: number) => () => savedPositions(dir)[w.id]?.offset === offset;
    let agent = new RunningAgent(config);
    await waitFor("50 records", () => readJsonLines(out).length >= 50, 20_000);
    await waitFor("the checkpoint at the end of line 50", savedAt(statSync(w.path).size), 10_000);
    const whole = jsonFileLine(51, 10 * MiB, "stdout");
    const firstPart = 6 * MiB;
    const readBefore = bytesRead(agent.pid);
    w.writeRaw(whole.subarray(0, firstPart));
    await waitFor("the agent to read into the long line", () => bytesRead(agent.pid) - readBefore >= firstPart, 20_000);
    agent.kill("SIGKILL");
    await agent.exited;
    w.writeRaw(whole.subarray(firstPart));
    w.writeMany(range(52, 100).map(line));

    agent = new RunningAgent(config);
    await waitFor("line 151", () => readJsonLines(out).some((r) => seqOf(r) === 151), 30_000);
    await waitFor("the checkpoint at the end of the file", savedAt(statSync(w.path).size), 10_000);
    agent.kill("SIGKILL");
    await agent.exited;
    w.writeMany(range(152, 9).map(line));
    agent = new RunningAgent(config);
    await waitFor("line 160", () => readJsonLines(out).some((r) => seqOf(r) === 160), 30_000);
    expect(await agent.stop()).toBe(0);

    const records = readJsonLines(out);
    expect(records.map(seqOf)).toEqual(range(1, 160));
    const cut = records.filter((r) => r._nagare_truncated === true);
    expect(cut.length).toBe(1);
    expect(String(cut[0]!.log)).toBe(`seq=51 ${"z".repeat(MiB - 7)}`);
  }, 90_000);

  test("decodeLongLine: json-file from head and tail (escapes, partial pieces, attrs); CRI from the head", () => {
    const head = (s: string) => Buffer.from(s);
    const entry = jsonFileEntry(Buffer.from(`a<b "q" \\ é${"z".repeat(100)}\n`), "stderr", "2024-01-02T03:04:05.5Z", '{"team":"edge"}');
    // Cut inside the \u003c escape and inside é: the text stops before each.
    expect(decodeLongLine(entry.subarray(0, 12), entry.subarray(-80), "json-file")).toEqual({ stream: "stderr", time: "2024-01-02T03:04:05.5Z", text: "a", partial: false, attrs: { team: "edge" }, truncated: true });
    const at = entry.indexOf(Buffer.from("é"));
    expect(decodeLongLine(entry.subarray(0, at + 1), entry.subarray(-80), "json-file").text).toBe('a<b "q" \\ ');
    expect(decodeLongLine(entry.subarray(0, at + 2), entry.subarray(-80), "json-file").text).toBe('a<b "q" \\ é');
    const piece = jsonFileEntry(Buffer.from("w".repeat(200)), "stdout", "2024-01-02T03:04:05Z");
    expect(decodeLongLine(piece.subarray(0, 50), piece.subarray(-60), "json-file")).toMatchObject({ text: "w".repeat(50 - 8), partial: true, truncated: true });
    const backslashEnd = jsonFileEntry(Buffer.from("ends with a backslash and n \\n"), "stdout", "2024-01-02T03:04:05Z");
    expect(decodeLongLine(backslashEnd.subarray(0, 20), backslashEnd.subarray(-60), "json-file").partial).toBe(true);
    expect(decodeLongLine(head("not json at all"), head("still not"), "json-file")).toMatchObject({ error: "an over-long line that is not a json-file entry", truncated: true });
    const cri = criEntry(Buffer.from(`é${"z".repeat(50)}`), "stdout", "F", "2024-01-02T03:04:05.000000001Z");
    expect(decodeLongLine(cri.subarray(0, 40), Buffer.alloc(0), "cri")).toEqual({ stream: "stdout", time: "2024-01-02T03:04:05.000000001Z", text: "", partial: false, truncated: true });
    expect(decodeLongLine(cri.subarray(0, 50), Buffer.alloc(0), "cri")).toMatchObject({ text: `é${"z".repeat(8)}`, truncated: true });
    // Fed in pieces smaller than the tail it keeps, a long line still has its own last bytes as its tail.
    const long = new LongLine(64);
    const entryOfMany = jsonFileEntry(Buffer.from("k".repeat(300_000)), "stderr", "2024-01-02T03:04:05.25Z", '{"a":"b"}');
    for (let at = 0; at < entryOfMany.length - 1; at += 1000) long.add(entryOfMany.subarray(at, Math.min(at + 1000, entryOfMany.length - 1)));
    expect(long.length).toBe(entryOfMany.length - 1);
    expect(long.decode("json-file")).toEqual({ stream: "stderr", time: "2024-01-02T03:04:05.25Z", text: "k".repeat(56), partial: true, attrs: { a: "b" }, truncated: true });
    // The merger keeps the mark on a record whose text fits, and on a merge it joins.
    const merger = new PartialMerger(1000);
    expect(merger.push(decodeLongLine(cri.subarray(0, 50), Buffer.alloc(0), "cri"), 100)).toMatchObject({ truncated: true, endOffset: 100 });
    expect(merger.push({ stream: "stdout", time: "t", text: "first ", partial: true }, 120)).toBeUndefined();
    expect(merger.push({ ...decodeLongLine(piece.subarray(0, 50), piece.subarray(-60), "json-file"), partial: false }, 200)).toMatchObject({ text: `first ${"w".repeat(42)}`, truncated: true });
  });
});

describe("positions of deleted files", () => {
  test("300 files deleted from a flat directory: their positions leave the checkpoint after forget_after, not before", async () => {
    const dir = caseDir();
    const flat = join(dir, "containers");
    mkdirSync(flat);
    const stays = join(flat, "stays.log");
    const names = range(1, 300).map((i) => join(flat, `gone-${i}.log`));
    const cri = (seq: number) => criEntry(Buffer.from(line(seq)), "stdout", "F", formatGoTime(new Date()));
    for (const path of [stays, ...names]) writeFileSync(path, Buffer.concat([cri(1), cri(2), cri(3)]));
    const FORGET_AFTER_MS = 2_000;
    const agent = new RunningAgent(dockerConfig(dir, [`${flat}/*.log`], { forget_after: `${FORGET_AFTER_MS}ms` }));
    const api = await apiOf(agent);
    const out = join(dir, "out.jsonl");
    await waitFor("every line", () => readJsonLines(out).length >= 903, 30_000);
    const allSaved = () => {
      const saved = savedPositions(dir);
      return [stays, ...names].every((path) => saved[path]?.offset === statSync(path).size);
    };
    await waitFor("all 301 positions saved", allSaved, 10_000);
    const positions = async () => metricValue(await metrics(api), "nagare_container_positions", 'source="containers"');
    expect(await positions()).toBe(301);

    for (const path of names) rmSync(path);
    const deletedAt = performance.now();
    await waitFor("only the file left in the checkpoint", () => Object.keys(savedPositions(dir)).join() === stays, 60_000);
    const forgottenAfter = performance.now() - deletedAt;
    expect(forgottenAfter).toBeGreaterThanOrEqual(FORGET_AFTER_MS);
    expect(await positions()).toBe(1);

    // The file left is still followed from its saved position.
    writeFileSync(stays, cri(4), { flag: "a" });
    await waitFor("the new line", () => readJsonLines(out).some((r) => r.container_id === stays && seqOf(r) === 4), 10_000);
    expect(await agent.stop()).toBe(0);
    expect(readJsonLines(out).filter((r) => r.container_id === stays).map(seqOf)).toEqual([1, 2, 3, 4]);
    console.log(`300 deleted files forgotten ${(forgottenAfter / 1000).toFixed(1)} s after their deletion (forget_after ${FORGET_AFTER_MS} ms)`);
  }, 90_000);

  // kubelet removes a container's /var/log/containers link; the file it led to may stay behind for a while.
  test("kubelet's flat links removed while their files stay: the files are let go and the positions forgotten", async () => {
    const dir = caseDir();
    const pods = join(dir, "pods");
    const flat = join(dir, "containers");
    mkdirSync(flat);
    const writers = range(1, 21).map((i) => new ContainerWriter({ root: pods, pod: { namespace: "shop", name: `web-${i}`, container: "web" } }));
    const links = writers.map((w, i) => {
      const id = (i + 1).toString(16).padStart(64, "0");
      symlinkSync(w.path, join(flat, `web-${i + 1}_shop_web-${id}.log`));
      return { id, path: join(flat, `web-${i + 1}_shop_web-${id}.log`) };
    });
    for (const w of writers) w.writeMany(range(1, 3).map(line));
    const agent = new RunningAgent(dockerConfig(dir, [`${flat}/*.log`], { allowed_link_targets: [pods], forget_after: "1s" }));
    const out = join(dir, "out.jsonl");
    await waitFor("every line", () => readJsonLines(out).length >= 63, 30_000);
    await waitFor("all 21 positions saved", () => links.every((l, i) => savedPositions(dir)[l.id]?.offset === statSync(writers[i]!.path).size), 10_000);
    for (const l of links.slice(1)) rmSync(l.path);
    await waitFor("only the link left in the checkpoint", () => Object.keys(savedPositions(dir)).join() === links[0]!.id, 60_000);
    writers[0]!.write(line(4));
    await waitFor("the new line", () => readJsonLines(out).some((r) => r.container_id === links[0]!.id && seqOf(r) === 4), 10_000);
    expect(await agent.stop()).toBe(0);
    expect(readJsonLines(out).length).toBe(64);
  }, 90_000);
});

/** Peak resident memory of a process, in bytes. */
function vmHwm(pid: number): number {
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

/** Bytes a process has read through read(2) and pread(2) so far. */
function bytesRead(pid: number): number {
  return Number(/^rchar: (\d+)/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"))![1]);
}

