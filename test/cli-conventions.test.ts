/**
 * What an operator sees at the command line: help for `nagare` alone, usage errors with exit 64, the source and
 * sink types in the top-level help, the `checkpoints` table (one row per stream) and its exit status for an
 * unusable or unreadable checkpoint, and the file example on a fresh host (the sink creates its directory).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { readJsonLines, ROOT, runCli, RunningAgent } from "./support/agent.ts";
import { writeAgentConfig, writeConfig } from "./support/config.ts";
import { ContainerWriter } from "./support/docker-writer.ts";
import { sinkDescriptors, sourceDescriptors } from "../src/registry.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
let cases = 0;
const caseDir = () => {
  const dir = join(tmp.path, `case-${++cases}`);
  mkdirSync(dir);
  return dir;
};

describe("help and usage errors", () => {
  test("`nagare` alone prints the help on stdout and exits 0; so does --help", async () => {
    const alone = await runCli([]);
    expect(alone.code).toBe(0);
    expect(alone.stderr).toBe("");
    expect(alone.stdout).toStartWith("Usage: nagare [options] [command]\n\nnagare, an edge log agent: reads logs on this host and ships them");
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toBe(alone.stdout);
  });

  test("the top-level help names every source and sink type with its description, and the exit statuses", async () => {
    const { stdout } = await runCli(["--help"]);
    // Not a TTY: commander wraps at 80 columns; joined again, each item is one line to compare.
    const text = stdout.trimEnd().replace(/\n {12}/g, " ");
    const section = (title: string) => text.split(`${title}\n`)[1]!.split("\n\n")[0]!.split("\n");
    const described = (d: { type: string; schema: { description?: string } }) => `  ${d.type.padEnd(8)}  ${d.schema.description}`;
    expect(section("Source types (`type:` of an entry under `sources`):")).toEqual(sourceDescriptors().map(described));
    expect(section("Sink types (`type:` of an entry under `sinks`):")).toEqual(sinkDescriptors().map(described));
    expect([...sourceDescriptors(), ...sinkDescriptors()].map((d) => d.type).sort()).toEqual(["console", "docker", "file", "forward", "journald", "kafka"]);
    expect(section("Exit status:").map((l) => l.trim().split(/\s+/)[0])).toEqual(["0", "1", "64", "69", "78"]);
  });

  const usageErrors: [string, string[], string][] = [
    ["an unknown command", ["chekpoints"], "error: unknown command 'chekpoints'\n(Did you mean checkpoints?)\nUsage: nagare [options] [command]\nRun 'nagare --help' for the commands.\n"],
    ["an unknown option", ["run", "--confg", "x.yaml"], "error: unknown option '--confg'\n(Did you mean --config?)\nUsage: nagare run [options]\nRun 'nagare run --help' for its options.\n"],
    ["an unknown top-level option", ["--bogus"], "error: unknown option '--bogus'\nUsage: nagare [options] [command]\nRun 'nagare --help' for the commands.\n"],
    ["a missing option argument", ["validate", "-c"], "error: option '-c, --config <file>' argument missing\nUsage: nagare validate [options]\nRun 'nagare validate --help' for its options.\n"],
    ["--reset without a source", ["checkpoints", "--reset"], "error: option '--reset <source...>' argument missing\nUsage: nagare checkpoints [options]\nRun 'nagare checkpoints --help' for its options.\n"],
    ["an extra argument", ["run", "now"], "error: too many arguments for 'run'. Expected 0 arguments but got 1: now.\nUsage: nagare run [options]\nRun 'nagare run --help' for its options.\n"],
  ];
  test.each(usageErrors)("%s exits 64 with the usage on stderr", async (_, args, stderr) => {
    const r = await runCli(args);
    expect(r).toEqual({ code: 64, stdout: "", stderr });
  });
});

describe("nagare checkpoints", () => {
  test("a table with one row per stream: the journal's seqnum and time, each container's offset in its file; --json as saved", async () => {
    const dir = caseDir();
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 20));
    const root = join(dir, "containers");
    const containers = [new ContainerWriter({ root }), new ContainerWriter({ root })].sort((a, b) => a.id.localeCompare(b.id));
    containers[0]!.writeMany(["a1", "a2", "a3"]);
    containers[1]!.writeMany(["b1", "b2", "b3", "b4", "b5"]);
    const out = join(dir, "out.jsonl");
    const config = writeAgentConfig(dir, {
      sources: {
        journal: { type: "journald", directory: join(dir, "journal"), start_at: "head" },
        containers: { type: "docker", include: [`${root}/*/*-json.log`], rescan_interval: "200ms", poll_interval: "50ms" },
      },
      sinks: { out: { type: "file", inputs: ["journal", "containers"], path: out } },
    });
    const agent = new RunningAgent(config);
    await waitFor("28 records", () => readJsonLines(out).length >= 28, 20_000);
    expect(await agent.stop()).toBe(0);
    for (const c of containers) c.close();

    const last = readJsonLines(out).find((r) => r.SEQ === "20")!;
    const logged = new Date(Number(last.__REALTIME_TIMESTAMP) / 1000).toISOString().replace(/\.\d+Z$/, "Z");
    const r = await runCli(["checkpoints", "-c", config]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    const at = lines[0]!.indexOf("POSITION");
    expect(lines[0]).toMatch(/^SOURCE +STREAM +AGE +POSITION$/);
    // Every row's position starts under the header's POSITION: the columns are aligned.
    const rows = lines.slice(1).map((l) => [...l.slice(0, at).trim().split(/ +/), l.slice(at)]);
    expect(rows.map(([source, stream, , position]) => [source, stream, position])).toEqual([
      ["containers", containers[0]!.id.slice(0, 12), `offset ${statSync(containers[0]!.path).size} in ${containers[0]!.path}`],
      ["containers", containers[1]!.id.slice(0, 12), `offset ${statSync(containers[1]!.path).size} in ${containers[1]!.path}`],
      ["journal", "journal", `seqnum 20, logged ${logged}`],
    ]);
    for (const row of rows) expect(row[2]).toMatch(/^\d+s$/);

    const json = await runCli(["checkpoints", "-c", config, "--json"]);
    expect(json.code).toBe(0);
    const data = join(dir, "data", "checkpoints");
    expect(JSON.parse(json.stdout)).toMatchObject([
      { version: 1, source: "containers", type: "docker", file: join(data, "containers.json"), position: { containers: { [containers[0]!.id]: { offset: statSync(containers[0]!.path).size } } } },
      { version: 1, source: "journal", type: "journald", file: join(data, "journal.json"), position: { cursor: last.__CURSOR } },
    ]);
  });

  test("an unusable checkpoint file is a row that says why, advice on stderr, and exit 78; --reset removes it", async () => {
    const dir = caseDir();
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" } });
    const file = join(dir, "data", "checkpoints", "journal.json");
    mkdirSync(join(dir, "data", "checkpoints"), { recursive: true });
    writeFileSync(file, '{"version":1,"source":"journal","pos');
    const r = await runCli(["checkpoints", "-c", config]);
    expect(r.code).toBe(78);
    expect(r.stdout).toMatch(/^SOURCE {3}STREAM {2}AGE +POSITION\njournal {2}- {7}\d+s +unusable: not valid JSON\n$/);
    expect(r.stderr).toBe(
      `${file}: unusable (not valid JSON); \`nagare run\` moves it aside and reads source journal again from the oldest position it can (duplicates, nothing lost); \`nagare checkpoints --reset journal\` makes it start as configured by start_at instead\n`,
    );
    const json = await runCli(["checkpoints", "-c", config, "--json"]);
    expect(json.code).toBe(78);
    expect(JSON.parse(json.stdout)).toEqual([{ source: "journal", file, problem: "not valid JSON" }]);

    writeFileSync(file, '{"version":9,"source":"journal"}');
    const newer = await runCli(["checkpoints", "-c", config]);
    expect(newer.code).toBe(78);
    expect(newer.stderr).toBe(
      `${file}: written by a newer nagare (format version 9; this one reads 1); \`nagare run\` refuses to start until you run that newer version, or drop it with \`nagare checkpoints --reset journal\`\n`,
    );

    const reset = await runCli(["checkpoints", "-c", config, "--reset", "journal"]);
    expect(reset).toEqual({ code: 0, stdout: "journal: checkpoint removed; the source starts as configured by start_at on the next run\n", stderr: "" });
    expect(await runCli(["checkpoints", "-c", config])).toEqual({ code: 0, stdout: `no checkpoints in ${join(dir, "data", "checkpoints")}\n`, stderr: "" });
  });

  test("--reset of a source that is neither configured nor saved is a usage error (64)", async () => {
    const dir = caseDir();
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" } });
    const r = await runCli(["checkpoints", "-c", config, "--reset", "jornal"]);
    expect(r).toEqual({ code: 64, stdout: "", stderr: `no source named jornal in the config and no checkpoint file for it in ${join(dir, "data", "checkpoints")}\n` });
  });

  test("a checkpoint directory this user may not read exits 69 and says so, instead of 'no checkpoints'", async () => {
    // Root without capabilities (an empty bounding set) is held to the mode bits like anyone: a directory of mode
    // 0 stands for the agent's own data_dir seen by another user, without depending on who may enter tmpdir().
    const dir = caseDir();
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" } });
    const checkpoints = join(dir, "data", "checkpoints");
    mkdirSync(checkpoints, { recursive: true });
    chmodSync(checkpoints, 0);
    const r = await runCli(["checkpoints", "-c", config], {}, ["setpriv", "--bounding-set=-all", "--", join(ROOT, "node_modules", ".bin", "bun"), join(ROOT, "src", "cli.ts")]);
    chmodSync(checkpoints, 0o700);
    expect(r).toEqual({
      code: 69,
      stdout: "",
      stderr: `cannot read the checkpoint directory ${checkpoints}: EACCES: permission denied, scandir '${checkpoints}'; run this as root or as the user the agent runs as\n`,
    });
  });
});

describe("examples on a fresh host", () => {
  test("journal-to-file validates when the sink's directory does not exist yet, and run creates it (0750)", async () => {
    const dir = caseDir();
    const fresh = join(dir, "fresh");
    mkdirSync(fresh);
    const env = { NAGARE_DATA_DIR: join(fresh, "var/lib/nagare"), NAGARE_OUT: join(fresh, "var/log/nagare/journal.jsonl") };
    const r = await runCli(["validate", "-c", join(ROOT, "examples", "journal-to-file.yaml")], env);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);

    // The example itself follows the host's journal; the same sink on a test journal shows the directory made.
    await writeJournal(join(dir, "journal"), sequenceEntries(1, 5));
    const config = writeConfig({ dir, source: { directory: join(dir, "journal"), start_at: "head" }, out: env.NAGARE_OUT });
    const agent = new RunningAgent(config);
    await waitFor("5 records", () => readJsonLines(env.NAGARE_OUT).length >= 5, 20_000);
    expect(await agent.stop()).toBe(0);
    for (const created of ["var", "var/log", "var/log/nagare"]) expect(statSync(join(fresh, created)).mode & 0o777).toBe(0o750);
    expect(agent.entries().filter((e) => e.msg.includes("created the directory")).map((e) => [e.level, e.msg])).toEqual([
      ["info", `Sink out created the directory ${join(fresh, "var/log/nagare")} (mode 0750) for ${env.NAGARE_OUT}.`],
    ]);
  });

  test("the forward example takes its shared key from FORWARD_SHARED_KEY and names it when it is unset", async () => {
    const example = join(ROOT, "examples", "journal-to-forward.yaml");
    expect(readFileSync(example, "utf8")).toContain("shared_key: ${FORWARD_SHARED_KEY}\n");
    const dir = caseDir();
    const env = { NAGARE_DATA_DIR: join(dir, "data") };
    expect(process.env.FORWARD_SHARED_KEY).toBeUndefined();
    const unset = await runCli(["validate", "-c", example], env);
    expect(unset.code).toBe(78);
    expect(unset.stderr).toContain("sinks.aggregator.shared_key: environment variable FORWARD_SHARED_KEY is not set");
    const set = await runCli(["validate", "-c", example], { ...env, FORWARD_SHARED_KEY: "a-long-random-key" });
    expect(set.stderr).toBe("");
    expect(set.code).toBe(0);
  });
});
