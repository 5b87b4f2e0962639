#!/usr/bin/env bun
/**
 * nagare's command line: run, validate, checkpoints, top, schema, version. Exit status (src/exit-codes.ts): 0 ok,
 * 64 (EX_USAGE) bad command line, 69 (EX_UNAVAILABLE) environment not ready, 78 (EX_CONFIG) bad config,
 * 1 fatal runtime error.
 */
import { Command, type CommanderError } from "commander";
import pkg from "../package.json" with { type: "json" };
import { EX_USAGE } from "./exit-codes.ts";

// Each command loads what it needs in its action: `version` loads nothing, `validate` no client or codec.
async function run(options: { config?: string }): Promise<void> {
  await (await import("./cli-run.ts")).run(options);
}

async function validate(options: { config?: string; connect?: boolean }): Promise<void> {
  const [{ validateCommand }, { resolveConfig }] = await Promise.all([import("./cli-validate.ts"), import("./config/origin.ts")]);
  const status = await validateCommand(resolveConfig(options.config), options.connect === true);
  if (status !== 0) process.exit(status);
}

async function schema(): Promise<void> {
  (await import("./config/json-schema.ts")).printSchema();
}

async function checkpoints(options: { config?: string; json?: boolean; reset?: string[] }): Promise<void> {
  const [{ loadOrExit }, command] = await Promise.all([import("./cli-config.ts"), import("./cli-checkpoints.ts")]);
  command.checkpoints(loadOrExit(options.config).config, options);
}

// Usage errors (unknown command or option, missing argument) exit 64; the settings are inherited by every
// command defined below.
const program = new Command()
  .name("nagare")
  .description(
    "nagare, an edge log agent: reads logs on this host and ships them to a destination, and after a restart or a crash resumes exactly after the last record the destination acknowledged. A config names sources and sinks of the types below.",
  )
  .version(pkg.version, "-V, --version", "print the version number")
  .exitOverride(usageError)
  .addHelpText("after", ({ error }) => typesAndExitStatusHelp(error ? process.stderr : process.stdout));

/**
 * After commander's error line, the usage of the command that failed and where its help is, on stderr; exit 64.
 * Commander calls this as a method of that command. Not the whole help: its first line would scroll away.
 */
function usageError(this: Command, err: CommanderError): never {
  if (err.exitCode === 0) process.exit(0); // --help, --version
  const names: string[] = [];
  for (let c: Command | null = this; c !== null; c = c.parent) names.unshift(c.name());
  const path = names.join(" ");
  process.stderr.write(`Usage: ${path} ${this.usage()}\nRun '${path} --help' for ${this.parent === null ? "the commands" : "its options"}.\n`);
  process.exit(EX_USAGE);
}

/** Each registered type with its schema's description, for the top-level help. */
type TypeList = { sources: [string, string][]; sinks: [string, string][] };

async function componentTypes(): Promise<TypeList> {
  const { sinkDescriptors, sourceDescriptors } = await import("./registry.ts");
  const list = (descriptors: { type: string; schema: { description?: string } }[]) => descriptors.map((d): [string, string] => [d.type, d.schema.description ?? ""]);
  return { sources: list(sourceDescriptors()), sinks: list(sinkDescriptors()) };
}

/** Loaded before parsing when the top-level help may be printed: commander asks for help text synchronously. */
let types: TypeList | undefined;

/** The top-level help's lists of source and sink types, each with its schema description, and the exit statuses. */
function typesAndExitStatusHelp(out: NodeJS.WriteStream): string {
  const help = program.createHelp();
  help.prepareContext({ helpWidth: out.isTTY ? out.columns : undefined });
  const item = (term: string, description: string) => help.formatItem(term, 8, description, help);
  return [
    "",
    "Source types (`type:` of an entry under `sources`):",
    ...(types?.sources ?? []).map(([type, description]) => item(type, description)),
    "",
    "Sink types (`type:` of an entry under `sinks`):",
    ...(types?.sinks ?? []).map(([type, description]) => item(type, description)),
    "",
    "Exit status:",
    item("0", "ok"),
    item("1", "fatal runtime error"),
    item("64", "bad command line: an unknown command or option, a missing argument"),
    item("69", "the environment is not ready and may heal: a destination unreachable, a journal or directory not readable, a program missing"),
    item("78", "the config is wrong (or a checkpoint file needs a decision): fix it, retrying cannot help"),
  ].join("\n");
}

const configOption = ["-c, --config <file>", "config file (default: /etc/nagare/nagare.yaml if it exists, else the embedded default)"] as const;

program.command("run").description("run the agent until SIGTERM/SIGINT; SIGHUP reloads the config").option(...configOption).action(run);
program
  .command("validate")
  .description("check a config and its fragments without running it, one line per problem; exit 0, 78 when the config is wrong, 69 when only the environment is not ready")
  .option(...configOption)
  .option("--connect", "also probe every broker, forward server and gateway (TCP, TLS, handshake), one line each")
  .action(validate);
program.command("schema").description("print the JSON Schema of the configuration (for editors and CI)").action(schema);
program
  .command("checkpoints")
  .description("print every source's saved position: a table with one row per stream (the journal, each container or file); exit 78 when a checkpoint file is unusable")
  .option(...configOption)
  .option("--json", "print JSON for machines: each checkpoint file as saved, with its path (an unusable one: its problem)")
  .option("--reset <source...>", "remove these sources' checkpoints (the agent must be stopped); they then start as configured by start_at")
  .action(checkpoints);
program
  .command("top")
  .description("a live view of a running agent from its /metrics, redrawn every second: records/s in and out per source and sink, acknowledged, retries, errors, queued batches, the buffer's fill; exit 69 when --once cannot reach it")
  .option("--url <url>", "the agent API's base URL, e.g. http://127.0.0.1:24280 (default: api.address of the config)")
  .option("--once", "print one snapshot (two scrapes a second apart, for real rates) as plain text and exit")
  .option(...configOption)
  .action(async (options: { url?: string; once?: boolean; config?: string }) => {
    const { topCommand } = await import("./cli-top.ts");
    await topCommand(options);
  });
program
  .command("version")
  .description("print the version")
  .action(() => {
    process.stdout.write(`nagare ${pkg.version} (bun ${Bun.version}, ${process.platform}-${process.arch})\n`);
  });

// Only the top-level help lists the types; a command's own help and the commands themselves never need them.
const WITHOUT_TYPES = new Set([...program.commands.map((c) => c.name()), "-V", "--version"]);
if (!WITHOUT_TYPES.has(process.argv[2] ?? "")) types = await componentTypes();

// `nagare` alone asks what it can do: the help on stdout and exit 0 (commander would treat it as an error).
if (process.argv.length <= 2) {
  program.outputHelp();
  process.exit(0);
}
await program.parseAsync(process.argv);
