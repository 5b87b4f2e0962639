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
import { describeError } from "./core/errors.ts";
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
    process.exit(1);
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

function checkpoints(options: { config?: string; json?: boolean }): void {
  const { config } = loadOrExit(options.config);
  const saved = new CheckpointStore(config.data_dir).list();
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
  .action(checkpoints);
program
  .command("version")
  .description("print the version")
  .action(() => {
    process.stdout.write(`nagare ${pkg.version} (bun ${Bun.version}, ${process.platform}-${process.arch})\n`);
  });

await program.parseAsync(process.argv);
