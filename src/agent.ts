/**
 * A running agent: one pipeline built from one config, replaced as a whole on reload. SIGHUP re-reads the
 * config file; an invalid one is logged and the running pipeline keeps going.
 */
import { existsSync } from "node:fs";
import { loadConfigFile, loadConfigText, type LoadResult } from "./config/load.ts";
import { DEFAULT_CONFIG_PATH, EMBEDDED_DEFAULT } from "./config/default.ts";
import { environmentProblems } from "./config/environment.ts";
import type { Config } from "./config/schema.ts";
import { Pipeline } from "./core/pipeline.ts";
import { describeError } from "./core/errors.ts";
import { buildSink, buildSource } from "./components.ts";
import type { Logger } from "./observe/log.ts";
import type { Metrics } from "./observe/metrics.ts";

/** Which config `run`, `validate` and `checkpoints` use: -c FILE, else /etc/nagare/nagare.yaml, else embedded. */
export function resolveConfig(path: string | undefined): { origin: string; load: () => LoadResult } {
  if (path !== undefined) return { origin: path, load: () => loadConfigFile(path) };
  if (existsSync(DEFAULT_CONFIG_PATH)) return { origin: DEFAULT_CONFIG_PATH, load: () => loadConfigFile(DEFAULT_CONFIG_PATH) };
  return { origin: "(embedded default)", load: () => loadConfigText(EMBEDDED_DEFAULT, "embedded.yaml") };
}

export function buildPipeline(config: Config, log: Logger, metrics: Metrics): Pipeline {
  const routes = new Map<string, string[]>();
  for (const [sinkName, sink] of Object.entries(config.sinks)) {
    for (const input of sink.inputs) routes.set(input, [...(routes.get(input) ?? []), sinkName]);
  }
  return new Pipeline(
    {
      dataDir: config.data_dir,
      bufferMaxBytes: config.buffer.max_bytes,
      batch: { maxBytes: config.buffer.batch_max_bytes, maxRecords: config.buffer.batch_max_records, timeoutMs: config.buffer.batch_timeout },
      checkpointIntervalMs: config.checkpoint_interval,
      routes,
      log,
      metrics,
    },
    Object.entries(config.sources).map(([name, c]) => buildSource(name, c)),
    Object.entries(config.sinks).map(([name, c]) => buildSink(name, c, log, metrics)),
  );
}

export class Agent {
  private pipeline: Pipeline;
  private config: Config;
  private reloading: Promise<void> | undefined;
  private readonly failedReloads;

  constructor(
    private readonly origin: { origin: string; load: () => LoadResult },
    config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.config = config;
    this.pipeline = buildPipeline(config, log, metrics);
    this.failedReloads = metrics.counter("nagare_config_reload_failures_total", "Reloads refused because the new config is invalid.");
  }

  start(): void {
    for (const problem of environmentProblems(this.config)) this.log.warn(`Config check: ${problem}.`);
    this.pipeline.start();
    this.log.info(`nagare is running with ${this.origin.origin}: ${Object.keys(this.config.sources).length} source(s), ${Object.keys(this.config.sinks).length} sink(s).`);
  }

  /** True once every source is read-once and done, and everything read was acknowledged. */
  get exhausted(): boolean {
    return this.pipeline.exhausted;
  }

  /** Re-reads the config; a valid one replaces the pipeline after draining the old one. */
  reload(): Promise<void> {
    this.reloading ??= this.applyReload().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  async stop(): Promise<void> {
    await this.reloading;
    const left = await this.pipeline.stop(this.config.shutdown_timeout);
    const read = sum(this.metrics, "nagare_source_read_records_total", Object.keys(this.config.sources), "source");
    if (left > 0) {
      this.log.warn(`nagare stopped with ${left} batch(es) not yet acknowledged; their records were not checkpointed and will be read again on the next start.`);
    } else {
      this.log.info(`nagare stopped after reading ${read} record(s); every record read was acknowledged and checkpointed.`);
    }
  }

  private async applyReload(): Promise<void> {
    const result = this.origin.load();
    if (!result.ok) {
      this.failedReloads.value++;
      this.log.error(`The reloaded config ${this.origin.origin} is invalid and was not applied; the running config stays in force: ${result.problems.join("; ")}.`);
      return;
    }
    this.log.info(`Reloading ${this.origin.origin}: draining the running pipeline.`);
    const left = await this.pipeline.stop(this.config.shutdown_timeout);
    if (left > 0) this.log.warn(`${left} batch(es) were not acknowledged before the reload; they will be read again from the saved position.`);
    try {
      this.pipeline = buildPipeline(result.config, this.log, this.metrics);
      this.pipeline.start();
      this.config = result.config;
      this.log.setLevel(result.config.log.level);
      this.log.info(`Reloaded ${this.origin.origin}.`);
    } catch (err) {
      this.failedReloads.value++;
      this.log.error(`The reloaded config could not be started (${describeError(err)}); the previous config is started again.`);
      this.pipeline = buildPipeline(this.config, this.log, this.metrics);
      this.pipeline.start();
    }
  }
}

function sum(metrics: Metrics, name: string, values: string[], label: string): number {
  return values.reduce((total, v) => total + metrics.read(name, { [label]: v }), 0);
}
