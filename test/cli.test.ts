/**
 * The command line and the single binary: built with `bun build --compile`, it runs with an empty environment
 * (no Bun, no Node on PATH), ships a real journal, and every command answers --help.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { readJsonLines, ROOT, runCli, RunningAgent } from "./support/agent.ts";
import { range, seqsOf, writeAgentConfig, writeConfig } from "./support/config.ts";
import pkg from "../package.json" with { type: "json" };

const tmp = tempDir();
afterAll(() => tmp.cleanup());
// Built into the test's temp dir: the suite leaves dist/ as it found it.
const BINARY = join(tmp.path, "dist", "nagare");

describe("the single binary", () => {
  beforeAll(async () => {
    const build = Bun.spawn(["bash", join(ROOT, "scripts", "build.sh"), join(tmp.path, "dist")], { stdout: "pipe", stderr: "pipe" });
    expect(await build.exited).toBe(0);
  }, 120_000);

  test("runs in an empty environment: env -i dist/nagare version", async () => {
    const r = await runCli(["version"], {}, ["env", "-i", BINARY]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`nagare ${pkg.version} (bun ${Bun.version}, linux-x64)\n`);
  });

  test("alone it prints the help and exits 0; an unknown command exits 64 (the binary's argv is parsed as from source)", async () => {
    const alone = await runCli([], {}, [BINARY]);
    expect(alone.code).toBe(0);
    expect(alone.stdout).toStartWith("Usage: nagare [options] [command]\n");
    expect(await runCli(["chekpoints"], {}, [BINARY])).toMatchObject({ code: 64, stdout: "" });
  });

  test("ships a real journal with nothing but journalctl on PATH", async () => {
    // A PATH holding only journalctl and stdbuf: no node, no bun.
    const bin = join(tmp.path, "bin");
    mkdirSync(bin);
    for (const tool of ["journalctl", "stdbuf"]) copyFileSync(Bun.which(tool)!, join(bin, tool));
    chmodSync(join(bin, "journalctl"), 0o755);
    const dir = join(tmp.path, "binary");
    mkdirSync(dir);
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 500));
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" } });
    const agent = new RunningAgent(config, { command: ["env", "-i", `PATH=${bin}`, BINARY] });
    await waitFor("500 records", () => readJsonLines(join(dir, "out.jsonl")).length >= 500, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(join(dir, "out.jsonl")))).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  });
});

describe("commands", () => {
  for (const command of ["run", "validate", "checkpoints", "schema", "version"]) {
    test(`${command} --help`, async () => {
      const r = await runCli([command, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: nagare ${command}`);
    });
  }

  test("run refuses a bad config with exit 78 and one line per problem", async () => {
    const path = join(tmp.path, "bad.yaml");
    writeFileSync(path, "sources: {}\nsinks: {}\nbogus: 1\n");
    const r = await runCli(["run", "-c", path]);
    expect(r.code).toBe(78);
    expect(r.stderr.trim().split("\n").sort()).toEqual(["bogus: unknown key", "sinks: at least one sink is needed", "sources: at least one source is needed"]);
  });

  test("SIGTERM as soon as the first line is logged: a graceful stop with exit 0", async () => {
    // With 40 sources, start() spawns 39 more journalctl processes after the first source logged that it reads:
    // a signal sent on that line arrives while start() still runs, before the first event-loop turn.
    const dir = join(tmp.path, "early-sigterm");
    mkdirSync(join(dir, "journal"), { recursive: true });
    const names = range(0, 40).map((i) => `journal${i}`);
    const config = writeAgentConfig(dir, {
      sources: Object.fromEntries(names.map((n) => [n, { type: "journald", directory: join(dir, "journal"), start_at: "head" }])),
      sinks: { out: { type: "file", inputs: names, path: join(dir, "out.jsonl") } },
    });
    const agent = new RunningAgent(config);
    await waitFor("the first log line", () => agent.log.length > 0, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(agent.entries().some((e) => e.msg.startsWith("Received SIGTERM: stopping reads"))).toBe(true);
  });

  test("checkpoints prints each source's saved position as a table", async () => {
    const dir = join(tmp.path, "checkpoints");
    mkdirSync(dir);
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 20));
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" } });
    expect((await runCli(["checkpoints", "-c", config])).stdout).toBe(`no checkpoints in ${join(dir, "data", "checkpoints")}\n`);
    const agent = new RunningAgent(config);
    await waitFor("20 records", () => readJsonLines(join(dir, "out.jsonl")).length >= 20, 20_000);
    expect(await agent.stop()).toBe(0);
    const r = await runCli(["checkpoints", "-c", config]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^SOURCE +STREAM +AGE +POSITION\njournal +journal +\d+s +seqnum 20, logged \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/);
    const json = JSON.parse((await runCli(["checkpoints", "-c", config, "--json"])).stdout);
    expect(json[0]).toMatchObject({ version: 1, source: "journal", type: "journald" });
    // A position of the wrong shape is judged as `run` judges it (by the source type's schema): unusable.
    const file = join(dir, "data", "checkpoints", "journal.json");
    writeFileSync(file, JSON.stringify({ ...json[0], file: undefined, position: { cursor: 20 } }));
    const bad = await runCli(["checkpoints", "-c", config]);
    expect(bad.code).toBe(78);
    expect(bad.stdout).toContain("unusable: its position does not fit a journald source (cursor: ");
  });

  test("run without -c uses the embedded default: the local journal from its tail, JSON lines on stdout", async () => {
    // journalctl on PATH is a wrapper reading a test journal, standing in for the host's journal.
    const dir = join(tmp.path, "default");
    const bin = join(dir, "bin");
    mkdirSync(bin, { recursive: true });
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 10));
    writeFileSync(join(bin, "journalctl"), `#!/bin/sh\nexec ${Bun.which("journalctl")} --directory=${join(dir, "journal")} "$@"\n`);
    chmodSync(join(bin, "journalctl"), 0o755);
    const agent = new RunningAgent("", { env: { PATH: `${bin}:${process.env.PATH}`, NAGARE_DATA_DIR: join(dir, "data") }, stdout: "pipe", command: undefined });
    const lines: string[] = [];
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of agent.stdout) lines.push(...decoder.decode(chunk).split("\n").filter(Boolean));
    })();
    await waitFor("the reader at the tail", () => agent.entries().some((e) => /reads the journal from cursor/.test(e.msg)), 20_000);
    expect(agent.entries().some((e) => e.msg.includes("running with (embedded default)"))).toBe(true);
    expect(agent.entries().some((e) => e.msg.includes("The API listens on http://127.0.0.1:24280"))).toBe(true);
    await writeJournal(join(dir, "journal"), sequenceEntries(11, 5));
    await waitFor("5 JSON lines", () => lines.length >= 5, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(lines.map((l) => Number(JSON.parse(l).SEQ))).toEqual([11, 12, 13, 14, 15]);
  });
});
