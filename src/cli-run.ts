/** `nagare run`: the agent until SIGTERM/SIGINT, SIGHUP reloading its config. */
import { Agent } from "./agent.ts";
import { loadOrExit } from "./cli-config.ts";
import { describeError, NagareError } from "./core/errors.ts";
import { Logger } from "./observe/log.ts";
import { Metrics } from "./observe/metrics.ts";
import { loadImplementations } from "./registry.ts";
import { EX_CONFIG, EX_FAILURE } from "./exit-codes.ts";

export async function run(options: { config?: string }): Promise<void> {
  const { config, origin } = loadOrExit(options.config);
  // The implementations of the types the config uses: building is then synchronous (a reload loads new ones).
  await loadImplementations(config);
  const log = new Logger(config.log.level);
  const agent = new Agent(origin, config, log, new Metrics());
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) {
      log.warn(`Received ${why} again while stopping; exiting now without waiting for acknowledgements (nothing acknowledged is lost).`);
      process.exit(EX_FAILURE);
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
    process.exit(err instanceof NagareError && err.code === "CHECKPOINT_UNSUPPORTED" ? EX_CONFIG : EX_FAILURE);
  }
  const exhaustion = setInterval(() => {
    if (!stopping && agent.exhausted) {
      clearInterval(exhaustion);
      void stop("the end of every read-once input");
    }
  }, 250);
}
