/**
 * Config fragments (`include`), with real agents, real journal files and file sinks: a broken fragment is refused
 * alone and named (log, metric, `validate`), the others ship; a fixed fragment starts on reload while the others
 * keep running (their journalctl is the same process, their records are not read again); a fragment broken by a
 * reload keeps its previous version; a removed one stops; a name clash refuses the later file, and on a reload
 * the file that changed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, metricValue, postReload, readJsonLines, runCli, RunningAgent } from "./support/agent.ts";
import { caseDirs, coverage, range, seqsOf } from "./support/config.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const caseDir = caseDirs(tmp.path);

/** The main file: global settings, the API on a free port, and the fragments under conf.d. */
function writeMain(dir: string, extra = "", include = '["conf.d/*.yaml"]'): string {
  mkdirSync(join(dir, "conf.d"), { recursive: true });
  const path = join(dir, "nagare.yaml");
  writeFileSync(path, `data_dir: ${dir}/data
api: { address: "127.0.0.1:0" }
buffer: { batch_timeout: 50ms }
checkpoint_interval: 200ms
include: ${include}
${extra}`);
  return path;
}

/** A team's fragment: its journal directory read by a source `<team>-src` into `<team>.jsonl`. */
function teamFragment(dir: string, team: string, options: { source?: string; inputs?: string[]; extra?: string } = {}): string {
  const source = options.source ?? `${team}-src`;
  return `sources:
  ${source}: { type: journald, directory: ${dir}/journal-${team}, start_at: head }
sinks:
  ${team}-out: { type: file, inputs: [${(options.inputs ?? [source]).join(", ")}], path: ${dir}/${team}.jsonl }
${options.extra ?? ""}`;
}

function writeFragment(dir: string, name: string, text: string): string {
  const path = join(dir, "conf.d", name);
  writeFileSync(path, text);
  return path;
}

async function journal(dir: string, team: string, from: number, n: number): Promise<void> {
  await writeJournal(join(dir, `journal-${team}`), sequenceEntries(from, n));
}

const shipped = (dir: string, team: string) => seqsOf(readJsonLines(join(dir, `${team}.jsonl`)));

async function shippedAll(dir: string, team: string, n: number): Promise<void> {
  await waitFor(`${n} records in ${team}.jsonl`, () => coverage(shipped(dir, team), 1, n).missing.length === 0, 20_000);
}

/** The `journalctl --follow` processes the agent runs on a team's journal: the same pid means the source was not restarted. */
function journalctls(agent: RunningAgent, dir: string, team: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (ppid === agent.pid && args.includes("--follow") && args.includes(`--directory=${dir}/journal-${team}`)) pids.push(Number(entry));
    } catch {
      // the process ended while it was looked at
    }
  }
  return pids;
}

async function reload(agent: RunningAgent): Promise<{ status: number; body: { applied: boolean; problems: string[] } }> {
  const r = await postReload(agent);
  return { status: r.status, body: (await r.json()) as { applied: boolean; problems: string[] } };
}

async function refusedGauge(api: string, file: string): Promise<number> {
  return metricValue(await (await fetch(`${api}/metrics`)).text(), "nagare_config_fragment_refused", `file="${file}"`);
}

const errors = (agent: RunningAgent) => agent.entries().filter((e) => e.level === "error").map((e) => e.msg);

describe("validate with fragments", () => {
  test("each file is checked on its own and every line names its file; the environment of a valid set exits 69", async () => {
    const dir = caseDir();
    const main = writeMain(dir, `sources:\n  shared: { type: journald, directory: ${dir} }\n`, '["conf.d/*.yaml", "none.d/*.yaml"]');
    const a = writeFragment(dir, "a.yaml", teamFragment(dir, "a", { inputs: ["a-src", "shared"] }));
    const b = writeFragment(dir, "b.yaml", `sorces: {}\nsources:\n  b-src: { type: journald }\n  b-unread: { type: journald }\nsinks:\n  b-out: { type: console, inputs: [b-src, a-src, nowhere] }\n`);
    const c = writeFragment(dir, "c.yaml", "sinks:\n  c-out: { type: console, inputs: [shared]\n");
    const d = writeFragment(dir, "d.yaml", `include: ["more/*.yaml"]\nsinks:\n  d-out: { type: file, inputs: [shared], path: ${dir}/d.jsonl }\n`);
    const r = await runCli(["validate", "-c", main]);
    expect(r.stderr.split("\n")).toEqual([
      `${b}: sorces: unknown key (did you mean "sources"?)`,
      `${b}: sources.b-unread: no sink of this file reads this source (a fragment's sources are read by its own sinks)`,
      `${b}: sinks.b-out.inputs[1]: source "a-src" belongs to ${a}; a fragment's sinks read only its own sources and those of the main file`,
      `${b}: sinks.b-out.inputs[2]: unknown source "nowhere" (sources of this file and of the main file: b-src, b-unread, shared)`,
      `${c}:3:1: invalid YAML: Flow map in block collection must be sufficiently indented and end with a }`,
      `${d}: include: a global setting, which only the main config file (${main}) may set`,
      `${a}: sources.a-src.directory: cannot read the directory ${dir}/journal-a (ENOENT)`,
      "",
    ]);
    expect(r.stdout).toBe(`${main}: include pattern "none.d/*.yaml" matches no file\n${main}: 3 of 4 fragment(s) refused (${b}, ${c}, ${d}); \`nagare run\` runs the main file and the other fragments (2 source(s), 1 sink(s) from the main file and 1 fragment(s))\n`);
    expect(r.code).toBe(78);

    for (const refused of [b, c, d]) rmSync(refused);
    const unready = await runCli(["validate", "-c", main]);
    expect(unready.stderr).toBe(`${a}: sources.a-src.directory: cannot read the directory ${dir}/journal-a (ENOENT)\n`);
    expect(unready.stdout).toBe(`${main}: include pattern "none.d/*.yaml" matches no file\n${main}: the config is valid (2 source(s), 1 sink(s) from the main file and 1 fragment(s)), but the environment is not ready (1 problem(s))\n`);
    expect(unready.code).toBe(69);
  });
});

describe("config fragments", () => {
  test("a broken fragment is refused alone: the good one ships, the log, the metric and `validate` name the broken file", async () => {
    const dir = caseDir();
    // The main file's source is read by a fragment's sink: fragments may read the main file's sources.
    const main = writeMain(dir, `sources:\n  shared: { type: journald, directory: ${dir}/journal-shared, start_at: head }\n`);
    await Promise.all([journal(dir, "a", 1, 50), journal(dir, "b", 1, 50), journal(dir, "shared", 1001, 20)]);
    writeFragment(dir, "a.yaml", teamFragment(dir, "a", { inputs: ["a-src", "shared"] }));
    const b = writeFragment(dir, "b.yaml", `data_dir: ${dir}/elsewhere\n${teamFragment(dir, "b").replace(`, path: ${dir}/b.jsonl`, "")}`);
    const agent = new RunningAgent(main);
    try {
      const api = await apiOf(agent);
      await waitFor("a's 50 records and the 20 of the main file's source", () => shipped(dir, "a").length >= 70, 20_000);
      expect(shipped(dir, "a").sort((x, y) => x - y)).toEqual([...range(1, 50), ...range(1001, 20)]);
      expect(errors(agent)).toContain(
        `The config fragment ${b} is refused, so none of its sources or sinks run (the other config files do): data_dir: a global setting, which only the main config file (${main}) may set; sinks.b-out.path: required.`,
      );
      expect(await refusedGauge(api, b)).toBe(1);
      expect(await refusedGauge(api, join(dir, "conf.d", "a.yaml"))).toBe(0);
      expect(readJsonLines(join(dir, "b.jsonl"))).toEqual([]);

      const checked = await runCli(["validate", "-c", main]);
      expect(checked.stderr).toBe(`${b}: data_dir: a global setting, which only the main config file (${main}) may set\n${b}: sinks.b-out.path: required\n`);
      expect(checked.stdout).toBe(`${main}: 1 of 2 fragment(s) refused (${b}); \`nagare run\` runs the main file and the other fragments (2 source(s), 1 sink(s) from the main file and 1 fragment(s))\n`);
      expect(checked.code).toBe(78);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);

  test("a fixed fragment starts on reload; the other fragments keep running (same journalctl, nothing read again)", async () => {
    const dir = caseDir();
    const main = writeMain(dir);
    await Promise.all([journal(dir, "a", 1, 50), journal(dir, "b", 1, 50)]);
    writeFragment(dir, "a.yaml", teamFragment(dir, "a"));
    const b = writeFragment(dir, "b.yaml", teamFragment(dir, "b").replace("type: file", "type: fil"));
    const agent = new RunningAgent(main);
    try {
      const api = await apiOf(agent);
      await shippedAll(dir, "a", 50);
      const reader = journalctls(agent, dir, "a");
      expect(reader).toHaveLength(1);
      expect(await refusedGauge(api, b)).toBe(1);

      writeFragment(dir, "b.yaml", teamFragment(dir, "b"));
      expect(await reload(agent)).toEqual({ status: 200, body: { applied: true, problems: [] } });
      await shippedAll(dir, "b", 50);
      expect(agent.entries().filter((e) => e.msg.startsWith("Reload applied in place")).map((e) => e.msg)).toEqual([
        "Reload applied in place; started anew: b-src, b-out; the other components kept running.",
      ]);
      expect(await refusedGauge(api, b)).toBe(0);
      await journal(dir, "a", 51, 50);
      await shippedAll(dir, "a", 100);
      expect(journalctls(agent, dir, "a")).toEqual(reader);
      expect(coverage(shipped(dir, "a"), 1, 100).duplicates).toBe(0);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);

  test("a fragment broken by a reload keeps its previous version running; a removed one stops", async () => {
    const dir = caseDir();
    const main = writeMain(dir);
    await Promise.all([journal(dir, "a", 1, 30), journal(dir, "b", 1, 30)]);
    writeFragment(dir, "a.yaml", teamFragment(dir, "a"));
    const b = writeFragment(dir, "b.yaml", teamFragment(dir, "b"));
    const agent = new RunningAgent(main);
    try {
      const api = await apiOf(agent);
      await Promise.all([shippedAll(dir, "a", 30), shippedAll(dir, "b", 30)]);
      const readerB = journalctls(agent, dir, "b");
      expect(readerB).toHaveLength(1);

      writeFragment(dir, "b.yaml", `${teamFragment(dir, "b")}  b-out:\n    type: console\n`);
      const broken = await reload(agent);
      expect(broken.status).toBe(200);
      expect(broken.body.problems).toEqual([`${b}:5:3: duplicate key "b-out"`]);
      expect(errors(agent)).toContain(`The config fragment ${b} is refused, its previous version keeps running: ${b}:5:3: duplicate key "b-out".`);
      expect(await refusedGauge(api, b)).toBe(1);
      await journal(dir, "b", 31, 30);
      await shippedAll(dir, "b", 60);
      expect(journalctls(agent, dir, "b")).toEqual(readerB);

      rmSync(b);
      expect(await reload(agent)).toEqual({ status: 200, body: { applied: true, problems: [] } });
      expect(agent.entries().some((e) => e.level === "info" && e.msg === `The config fragment ${b} is gone; its sources and sinks stop: b-src, b-out.`)).toBe(true);
      await waitFor("b's journalctl to end", () => journalctls(agent, dir, "b").length === 0, 10_000);
      expect(await refusedGauge(api, b)).toBe(0);
      await journal(dir, "a", 31, 10);
      await shippedAll(dir, "a", 40);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
    expect(shipped(dir, "b").length).toBe(60);
  }, 60_000);

  test("a name clash refuses the later file; on a reload, the file that changed", async () => {
    const dir = caseDir();
    const main = writeMain(dir);
    await Promise.all([journal(dir, "a", 1, 20), journal(dir, "b", 1, 20), journal(dir, "c", 1, 20)]);
    const a = writeFragment(dir, "a.yaml", teamFragment(dir, "a", { source: "logs" }));
    const b = writeFragment(dir, "b.yaml", teamFragment(dir, "b", { source: "logs" }));
    const c = writeFragment(dir, "c.yaml", teamFragment(dir, "c"));
    const agent = new RunningAgent(main);
    try {
      const api = await apiOf(agent);
      await Promise.all([shippedAll(dir, "a", 20), shippedAll(dir, "c", 20)]);
      expect(errors(agent)).toEqual([
        `The config fragment ${b} is refused, so none of its sources or sinks run (the other config files do): sources.logs: the name "logs" is taken by a source of ${a}; names must be unique across the main file and its fragments.`,
      ]);
      expect(readJsonLines(join(dir, "b.jsonl"))).toEqual([]);

      // a.yaml (sorted first) now also takes c's source name: c did not change, so a's new version is refused.
      writeFragment(dir, "a.yaml", `${teamFragment(dir, "a", { source: "logs" })}  a-copy: { type: file, inputs: [c-src], path: ${dir}/copy.jsonl }\n`.replace("sinks:", `  c-src: { type: journald, directory: ${dir}/journal-c }\nsinks:`));
      const clash = await reload(agent);
      expect(clash.body.problems).toEqual([
        `${a}: sources.c-src: the name "c-src" is taken by a source of ${c}; names must be unique across the main file and its fragments`,
        `${b}: sources.logs: the name "logs" is taken by a source of ${a}; names must be unique across the main file and its fragments`,
      ]);
      await journal(dir, "c", 21, 10);
      await shippedAll(dir, "c", 30);
      await journal(dir, "a", 21, 10);
      await shippedAll(dir, "a", 30);
      expect(readJsonLines(join(dir, "copy.jsonl"))).toEqual([]);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);
});
