/**
 * A CPU profile of the agent (run from source under `bun --cpu-prof-md`) shipping the 200,000-entry small-entry
 * journal to the file sink or to librdkafka's mock cluster; writes the markdown profile under .bench/profiles/
 * and prints its summary. This is how the hot paths were found; it is not a benchmark (the profiler slows
 * the agent down).
 *   node_modules/.bin/bun scripts/bench/profile.ts [kafka|file] [small|wide]
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startMockCluster } from "../../test/support/kafka.ts";
import { benchJournal, ROOT, type JournalProfile } from "./common.ts";

const SINK = process.argv[2] ?? "kafka";
const PROFILE = (process.argv[3] ?? "small") as JournalProfile;
const { work, journal, tail } = await benchJournal(200_000, PROFILE);
const outDir = join(ROOT, ".bench", "profiles", `${SINK}-${PROFILE}`);
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });

const cluster = SINK === "kafka" ? await startMockCluster({ brokers: 3, topics: [{ name: "logs", partitions: 3 }] }) : undefined;
try {
  const data = join(work, "profile-data");
  rmSync(data, { recursive: true, force: true });
  const sink =
    cluster === undefined
      ? `out: { type: file, inputs: [journal], path: ${join(work, "profile-out.jsonl")} }`
      : `kafka: { type: kafka, inputs: [journal], brokers: [${cluster.brokers.map((b) => `"${b}"`).join(", ")}], topic: logs }`;
  const config = join(work, "profile.yaml");
  writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  ${sink}\n`);
  rmSync(join(work, "profile-out.jsonl"), { force: true });
  const agent = Bun.spawn([join(ROOT, "node_modules", ".bin", "bun"), ...(process.env.HEAP ? ["--heap-prof-md", `--heap-prof-dir=${outDir}`] : ["--cpu-prof-md", `--cpu-prof-dir=${outDir}`]), join(ROOT, "src", "cli.ts"), "run", "-c", config], { stdout: "ignore", stderr: "inherit" });
  const checkpoint = join(data, "checkpoints", "journal.json");
  const deadline = performance.now() + 300_000;
  while (!(existsSync(checkpoint) && JSON.parse(readFileSync(checkpoint, "utf8")).position?.cursor === tail)) {
    if (performance.now() > deadline || agent.exitCode !== null) throw new Error("the profiled agent did not finish");
    await Bun.sleep(20);
  }
  agent.kill("SIGTERM");
  await agent.exited;
} finally {
  await cluster?.stop();
}
const file = readdirSync(outDir).find((f) => f.endsWith(".md"));
if (file === undefined) throw new Error(`no profile written in ${outDir}`);
const text = readFileSync(join(outDir, file), "utf8");
console.log(`profile: ${join(outDir, file)}`);
console.log(text.split("\n").slice(0, 60).join("\n"));
