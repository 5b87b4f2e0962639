#!/usr/bin/env bun
/**
 * nagare's command line: run, validate, checkpoints, version. Exit status: 0 ok, 78 (EX_CONFIG) bad config,
 * 1 fatal runtime error.
 */
import { Command } from "commander";
import pkg from "../package.json" with { type: "json" };
import { Agent, resolveConfig } from "./agent.ts";
import { environmentProblems } from "./config/environment.ts";
import { probeConfig } from "./config/connect.ts";
import { printSchema } from "./config/json-schema.ts";
import type { Config } from "./config/schema.ts";
import { CheckpointStore } from "./core/checkpoint-store.ts";
import { DataDirLock } from "./core/data-dir-lock.ts";
import { describeError, NagareError } from "./core/errors.ts";
import { Logger } from "./observe/log.ts";
import { Metrics } from "./observe/metrics.ts";

export const EX_CONFIG = 78;

function loadOrExit(path: string | undefined): { config: Config; origin: ReturnType<typeof resolveConfig> } {
  const origin = resolveConfig(path);
  const result = origin.load();
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`${problem}\n`);
    process.exit(EX_CONFIG);
  }
  return { config: result.config, origin };
}

async function run(options: { config?: string }): Promise<void> {
  const { config, origin } = loadOrExit(options.config);
  const log = new Logger(config.log.level);
  const agent = new Agent(origin, config, log, new Metrics());
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) {
      log.warn(`Received ${why} again while stopping; exiting now without waiting for acknowledgements (nothing acknowledged is lost).`);
      process.exit(1);
    }
    stopping = true;
    log.info(`Received ${why}: stopping reads, waiting for acknowledgements and saving positions.`);
    await agent.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGHUP", () => void agent.reload().catch((err) => log.error(`Reload failed: ${describeError(err)}.`)));
  // The handlers are in place before start() logs that sources read: a supervisor may stop the agent as soon as
  // it sees that line, and a SIGTERM before the handlers would end the process without saving positions.
  try {
    agent.start();
  } catch (err) {
    log.error(`nagare cannot start: ${describeError(err)}.`);
    // A checkpoint from a newer version is a decision for the operator, like a bad config: retrying cannot help.
    process.exit(err instanceof NagareError && err.code === "CHECKPOINT_UNSUPPORTED" ? EX_CONFIG : 1);
  }
  const exhaustion = setInterval(() => {
    if (!stopping && agent.exhausted) {
      clearInterval(exhaustion);
      void stop("the end of every read-once input");
    }
  }, 250);
}

async function validate(options: { config?: string; connect?: boolean }): Promise<void> {
  const { config, origin } = loadOrExit(options.config);
  const problems = environmentProblems(config);
  for (const problem of problems) process.stderr.write(`${problem}\n`);
  if (problems.length > 0) process.exit(EX_CONFIG);
  process.stdout.write(`${origin.origin}: valid (${Object.keys(config.sources).length} source(s), ${Object.keys(config.sinks).length} sink(s))\n`);
  if (!options.connect) return;
  const probes = await probeConfig(config);
  for (const probe of probes) (probe.ok ? process.stdout : process.stderr).write(`${probe.line}\n`);
  if (probes.some((p) => !p.ok)) process.exit(EX_CONFIG);
}

function checkpoints(options: { config?: string; json?: boolean; reset?: string[] }): void {
  const { config } = loadOrExit(options.config);
  const store = new CheckpointStore(config.data_dir);
  if (options.reset !== undefined) return resetCheckpoints(config, store, options.reset);
  const saved = store.list();
  if (options.json) {
    process.stdout.write(`${JSON.stringify(saved.map((s) => s.checkpoint ?? { file: s.file, problem: s.problem }))}\n`);
    return;
  }
  if (saved.length === 0) {
    process.stdout.write(`no checkpoints in ${config.data_dir}\n`);
    return;
  }
  for (const { file, checkpoint, problem } of saved) {
    if (checkpoint === undefined) process.stdout.write(`${file}: unusable (${problem})\n`);
    else process.stdout.write(`${checkpoint.source}\t${checkpoint.type}\t${checkpoint.saved_at}\t${JSON.stringify(checkpoint.position)}\n`);
  }
}

/** Drops saved positions while no agent runs on the data dir: those sources then start as configured by start_at. */
function resetCheckpoints(config: Config, store: CheckpointStore, sources: string[]): void {
  const unknown = sources.filter((s) => !(s in config.sources) && !store.list().some((c) => c.file === store.pathOf(s)));
  if (unknown.length > 0) {
    process.stderr.write(`no source named ${unknown.join(", ")} in the config and no checkpoint file for it in ${store.dir}\n`);
    process.exit(EX_CONFIG);
  }
  const lock = new DataDirLock(config.data_dir);
  try {
    lock.acquire();
  } catch (err) {
    process.stderr.write(`cannot reset checkpoints: ${describeError(err)}; stop that agent first\n`);
    process.exit(1);
  }
  try {
    for (const source of sources) {
      const removed = store.reset(source);
      process.stdout.write(removed ? `${source}: checkpoint removed; the source starts as configured by start_at on the next run\n` : `${source}: no checkpoint saved\n`);
    }
  } finally {
    lock.release();
  }
}

const program = new Command()
  .name("nagare")
  .description("Edge log agent: the systemd journal to Kafka, resumed exactly after the last acknowledged record.")
  .version(pkg.version, "-V, --version", "print the version number");

const configOption = ["-c, --config <file>", "config file (default: /etc/nagare/nagare.yaml if it exists, else the embedded default)"] as const;

program.command("run").description("run the agent until SIGTERM/SIGINT; SIGHUP reloads the config").option(...configOption).action(run);
program
  .command("validate")
  .description("check a config without running it; exit 0, or 78 with one line per problem")
  .option(...configOption)
  .option("--connect", "also probe every broker and gateway (TCP, TLS handshake), one line each")
  .action(validate);
program.command("schema").description("print the JSON Schema of the configuration (for editors and CI)").action(printSchema);
program
  .command("checkpoints")
  .description("print the saved positions of every source")
  .option(...configOption)
  .option("--json", "print JSON instead of one line per source")
  .option("--reset <source...>", "remove these sources' checkpoints (the agent must be stopped); they then start as configured by start_at")
  .action(checkpoints);
program
  .command("version")
  .description("print the version")
  .action(() => {
    process.stdout.write(`nagare ${pkg.version} (bun ${Bun.version}, ${process.platform}-${process.arch})\n`);
  });

await program.parseAsync(process.argv);
