/**
 * A running agent: the pipeline built from the config, the HTTP API, and reloads. A reload (SIGHUP or
 * POST /reload) re-reads the config file; an invalid one is logged and counted, and the running pipeline keeps
 * going. A valid one is applied in place: sources and sinks whose config did not change keep running; changes
 * to the buffer or the data directory restart the whole pipeline (drained first).
 */
import { randomUUID } from "node:crypto";
import { assemblyOf, linesOf, type Assembly, type Fragment } from "./config/fragments.ts";
import type { ConfigOrigin } from "./config/origin.ts";
import { environmentProblems } from "./config/environment.ts";
import type { Config } from "./config/schema.ts";
import { Pipeline } from "./core/pipeline.ts";
import type { Reconfiguration } from "./core/reload.ts";
import { describeError } from "./core/errors.ts";
import { buildSink, buildSource, loadImplementations } from "./registry.ts";
import { ApiServer, type ApiAuth, type HealthReport } from "./observe/api.ts";
import { apiTokenFile, loadOrCreateApiToken } from "./observe/api-token.ts";
import type { Logger } from "./observe/log.ts";
import type { Metrics } from "./observe/metrics.ts";

/** What a reload answers (POST /reload's body): whether the config was applied, and what was refused. */
export interface ReloadResult {
  applied: boolean;
  problems: string[];
}

function routesOf(config: Config): Map<string, string[]> {
  const routes = new Map<string, string[]>();
  for (const [sinkName, sink] of Object.entries(config.sinks)) {
    for (const input of sink.inputs) routes.set(input, [...(routes.get(input) ?? []), sinkName]);
  }
  return routes;
}

export function buildPipeline(config: Config, log: Logger, metrics: Metrics): Pipeline {
  return new Pipeline(
    {
      dataDir: config.data_dir,
      bufferMaxBytes: config.buffer.max_bytes,
      batch: { maxBytes: config.buffer.batch_max_bytes, maxRecords: config.buffer.batch_max_records, timeoutMs: config.buffer.batch_timeout },
      checkpointIntervalMs: config.checkpoint_interval,
      deadLetter: { maxBytes: config.dead_letter.max_bytes, maxFiles: config.dead_letter.max_files },
      routes: routesOf(config),
      log,
      metrics,
    },
    Object.entries(config.sources).map(([name, c]) => buildSource(name, c, { log, metrics })),
    Object.entries(config.sinks).map(([name, c]) => buildSink(name, c, { log, metrics })),
  );
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export class Agent {
  private pipeline: Pipeline;
  private config: Config;
  private api: ApiServer | undefined;
  /** The reload being applied, and the one that runs after it for requests that came meanwhile. */
  private reloading: Promise<ReloadResult> | undefined;
  private nextReload: Promise<ReloadResult> | undefined;
  /** stop() was called: reloads are refused from then on. */
  private stopping = false;
  private readonly failedReloads;
  private readonly reloads;
  private readonly fragmentRefused;
  /** What runs of each config fragment. */
  private fragments: ReadonlyMap<string, Fragment> = new Map();
  /** Every fragment file the last load found, refused ones included. */
  private fragmentFiles: readonly string[] = [];

  constructor(
    private readonly origin: ConfigOrigin,
    config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.config = config;
    this.pipeline = buildPipeline(config, log, metrics);
    this.failedReloads = metrics.counter("nagare_config_reload_failures_total", "Reloads refused because the new config is invalid or could not start.");
    this.reloads = metrics.counter("nagare_config_reloads_total", "Reloads applied.");
    this.fragmentRefused = metrics.declare("gauge", "nagare_config_fragment_refused", "1 while the current version of this config fragment is refused (its previous version may still run), else 0.");
    this.takeFragments(assemblyOf(config));
  }

  start(): void {
    // The environment may heal (a directory made readable, a program installed): run anyway; the component
    // concerned keeps trying and /health reports it while it cannot work.
    for (const problem of environmentProblems(this.config)) this.log.error(`The environment is not ready: ${problem}; nagare runs anyway and keeps trying.`);
    this.pipeline.start();
    this.startApi();
    this.log.info(`nagare is running with ${this.origin.origin}: ${Object.keys(this.config.sources).length} source(s), ${Object.keys(this.config.sinks).length} sink(s).`);
  }

  /** True once every source is read-once and done, and everything read was acknowledged. */
  get exhausted(): boolean {
    // With fragments there may be no source at all for now; a reload may add some.
    return Object.keys(this.config.sources).length > 0 && this.pipeline.exhausted;
  }

  health(): HealthReport {
    const maxStall = this.config.health.max_stall;
    const { healthy, sources, sinks, checkpoints } = this.pipeline.health(maxStall);
    return { healthy, body: { status: healthy ? "ok" : "unhealthy", max_stall_seconds: maxStall / 1000, sources, sinks, checkpoints } };
  }

  /**
   * Re-reads the config and applies it; never throws, never stops the agent. Requests are coalesced: one that
   * comes while a reload runs is answered by a single further reload, shared by every request made meanwhile
   * (it reads the config as it is once the running one is done).
   */
  reload(): Promise<ReloadResult> {
    if (this.stopping) return Promise.resolve({ applied: false, problems: ["the agent is stopping; the config is read again at the next start"] });
    if (this.reloading === undefined) {
      this.reloading = this.applyReload().finally(() => (this.reloading = undefined));
      return this.reloading;
    }
    this.nextReload ??= this.reloading.then(() => {
      this.nextReload = undefined;
      return this.reload();
    });
    return this.nextReload;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.reloading;
    await this.nextReload;
    this.api?.stop();
    const left = await this.pipeline.stop(this.config.shutdown_timeout);
    const read = Object.keys(this.config.sources).reduce((n, s) => n + this.metrics.read("nagare_source_read_records_total", { source: s }), 0);
    if (left > 0) {
      this.log.warn(`nagare stopped with ${left} batch(es) not yet acknowledged; their records were not checkpointed and will be read again on the next start.`);
    } else {
      this.log.info(`nagare stopped after reading ${read} record(s); every record read was acknowledged and checkpointed.`);
    }
  }

  private startApi(): void {
    this.api?.stop();
    this.api = undefined;
    if (this.config.api === false) return;
    let auth: ApiAuth;
    try {
      auth = loadOrCreateApiToken(this.config.data_dir);
    } catch (err) {
      // Reading the API still works; changing through it cannot be authorised (SIGHUP still reloads).
      auth = { token: randomUUID(), tokenFile: apiTokenFile(this.config.data_dir) };
      this.log.error(`POST /reload is refused until the agent can write its API token (use SIGHUP to reload): ${describeError(err)}.`);
    }
    this.api = ApiServer.start(this.config.api.address, { metrics: () => this.metrics.render(), health: () => this.health(), reload: () => this.reload() }, auth, this.log);
  }

  private async applyReload(): Promise<ReloadResult> {
    this.log.debug(`A reload starts: reading ${this.origin.origin}.`);
    const result = this.origin.load(this.fragments);
    if (!result.ok) {
      this.failedReloads.value++;
      this.log.error(`The reloaded config ${this.origin.origin} is invalid and was not applied; the running config stays in force: ${result.problems.join("; ")}.`);
      return { applied: false, problems: result.problems };
    }
    const next = result.config;
    const problems = environmentProblems(next);
    const inPlace = same(next.data_dir, this.config.data_dir) && same(next.buffer, this.config.buffer) && same(next.checkpoint_interval, this.config.checkpoint_interval) && same(next.dead_letter, this.config.dead_letter);
    let plan: Reconfiguration | undefined;
    try {
      await loadImplementations(next);
      plan = inPlace ? this.planReconfiguration(next) : undefined;
    } catch (err) {
      // Building the new components failed (e.g. a TLS file went missing): nothing was touched yet.
      this.failedReloads.value++;
      this.log.error(`The reloaded config ${this.origin.origin} cannot be applied and the running config stays in force: ${describeError(err)}.`);
      return { applied: false, problems: [describeError(err)] };
    }
    try {
      if (plan !== undefined) await this.reconfigure(plan);
      else await this.restart(next);
    } catch (err) {
      this.failedReloads.value++;
      this.log.error(`The reloaded config could not be applied (${describeError(err)}); the previous config is started again.`);
      await this.restart(this.config).catch((again) => this.log.error(`The previous config could not be started again: ${describeError(again)}.`));
      return { applied: false, problems: [describeError(err)] };
    }
    const apiChanged = !same(next.api, this.config.api);
    this.config = next;
    this.log.setLevel(next.log.level);
    if (apiChanged) this.startApi();
    this.reloads.value++;
    for (const problem of problems) this.log.error(`The environment is not ready: ${problem}; nagare runs anyway and keeps trying.`);
    const refused = this.takeFragments(assemblyOf(next));
    this.log.info(`Reloaded ${this.origin.origin}.`);
    // What the old config built (parsed configs, replaced sinks and sources, their buffers) is garbage now:
    // collect it at once rather than when allocation next pressures the heap, so that a burst of reloads does
    // not show as RSS growth. Reloads are rare; a full collection of this heap takes milliseconds.
    Bun.gc(true);
    return { applied: true, problems: refused };
  }

  /**
   * Logs what happened to each config fragment and keeps what runs of them for the next reload; returns the
   * problems of refused fragments, one line each with its file.
   */
  private takeFragments(assembly: Assembly | undefined): string[] {
    if (assembly === undefined) return [];
    const refused: string[] = [];
    const gauge = (file: string) => this.fragmentRefused({ file });
    for (const report of assembly.fragments) {
      gauge(report.file).value = report.problems.length > 0 ? 1 : 0;
      if (report.problems.length === 0) continue;
      refused.push(...linesOf(report, true));
      const what = report.kept ? "its previous version keeps running" : "so none of its sources or sinks run (the other config files do)";
      this.log.error(`The config fragment ${report.file} is refused, ${what}: ${report.problems.join("; ")}.`);
    }
    for (const file of this.fragmentFiles) {
      if (assembly.fragments.some((r) => r.file === file)) continue;
      gauge(file).value = 0;
      const gone = this.fragments.get(file);
      const names = gone === undefined ? [] : [...Object.keys(gone.sources), ...Object.keys(gone.sinks)];
      this.log.info(`The config fragment ${file} is gone; ${names.length === 0 ? "it ran nothing" : `its sources and sinks stop: ${names.join(", ")}`}.`);
    }
    for (const name of assembly.idle) {
      this.log.warn(`Source ${name} of ${assembly.main.file} is read by no running sink, so it is not started; it reads on from its saved position once a sink reads it.`);
    }
    this.fragments = assembly.accepted;
    this.fragmentFiles = assembly.fragments.map((r) => r.file);
    return refused;
  }

  /** What changes in place: unchanged sources and sinks keep running; the rest is built now (it may throw). */
  private planReconfiguration(next: Config): Reconfiguration {
    const keepSources = new Set(Object.keys(next.sources).filter((n) => same(next.sources[n], this.config.sources[n])));
    const keepSinks = new Set(Object.keys(next.sinks).filter((n) => same(next.sinks[n], this.config.sinks[n])));
    return {
      keepSources,
      keepSinks,
      addSources: Object.entries(next.sources).filter(([n]) => !keepSources.has(n)).map(([n, c]) => buildSource(n, c, { log: this.log, metrics: this.metrics })),
      addSinks: Object.entries(next.sinks).filter(([n]) => !keepSinks.has(n)).map(([n, c]) => buildSink(n, c, { log: this.log, metrics: this.metrics })),
      routes: routesOf(next),
      drainTimeoutMs: next.shutdown_timeout,
    };
  }

  private async reconfigure(plan: Reconfiguration): Promise<void> {
    const { started, dropped } = await this.pipeline.reconfigure(plan);
    this.log.info(`Reload applied in place; ${started.length === 0 ? "no component changed" : `started anew: ${started.join(", ")}`}; the other components kept running.`);
    for (const [sink, records] of dropped) {
      this.log.warn(`Sink ${sink} was removed by the reload with ${records} record(s) it had not delivered within shutdown_timeout; they are not sent to it (the other sinks are unaffected).`);
    }
  }

  /** The buffer or the data directory changed: drain and replace the whole pipeline. */
  private async restart(next: Config): Promise<void> {
    this.log.info(`Reloading ${this.origin.origin}: the buffer or data directory changed, so the whole pipeline is drained and restarted.`);
    const left = await this.pipeline.stop(this.config.shutdown_timeout);
    if (left > 0) this.log.warn(`${left} batch(es) were not acknowledged before the reload; they will be read again from the saved position.`);
    this.pipeline = buildPipeline(next, this.log, this.metrics);
    this.pipeline.start();
  }
}
