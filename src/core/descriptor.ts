/**
 * What the agent knows of a component type, declared once in the component's own folder (`descriptor.ts`) and
 * listed in the registry (src/registry.ts). The config assembly, `validate`, `nagare schema` and the agent learn
 * every type from its descriptor, so a new type touches its folder and the registry only.
 *
 * A descriptor is light: its schema and checks load with it, while the implementation (clients, codecs, wasm)
 * loads through `implementation()` only when something is built, so `validate` never loads a Kafka client.
 */
import type { z } from "zod";
import type { Sink, Source } from "./component.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";

/** What a component's constructor may take from the agent besides its own config. */
export interface BuildDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
}

/** One line of `nagare validate --connect`. */
export interface ProbeResult {
  ok: boolean;
  /** The destination answered but refuses this config (a forward server that requires a shared_key): a config problem. */
  refused?: boolean;
  line: string;
}

/** A config schema the `type` key tells apart from the others: a strict object with `type: z.literal(...)`. */
export type ComponentSchema = z.core.$ZodTypeDiscriminable & z.ZodType<{ type: string }>;

interface Descriptor<S extends ComponentSchema, Built> {
  /** The `type:` value in the config; also the component's folder name. */
  readonly type: string;
  /** The zod schema of one entry under `sources`/`sinks` (with `.describe()`s and defaults): it is also the JSON Schema and the reference. */
  readonly schema: S;
  /**
   * Loads the implementation. Kept out of the descriptor's imports so commands that only read configs do not
   * load clients; `loadImplementations()` in the registry awaits it before anything is built.
   */
  implementation(): Promise<{ build(name: string, config: z.output<S>, deps: BuildDeps): Built }>;
  /**
   * Problems of the machine for this entry (files, directories, programs), each a line starting with `at` (its key
   * path, e.g. `sources.journal`). The environment may heal, so these are reported apart from config problems.
   */
  environment?(config: z.output<S>, at: string): string[];
  /** `validate --connect`: reach every destination this entry names, each probe bounded by `timeoutMs`. */
  probe?(config: z.output<S>, at: string, timeoutMs: number): Promise<ProbeResult[]>;
}

/** One row of `nagare checkpoints`: a stream of a source and where its saved position is, in words. */
export interface PositionRow {
  stream: string;
  summary: string;
}

/**
 * The position a source type saves: its shape, checked whenever a checkpoint is loaded (`run`, `nagare
 * checkpoints`), and how it reads to an operator.
 */
export interface SavedPositionKind<P = unknown> {
  readonly schema: z.ZodType<P>;
  describe(position: P): PositionRow[];
}

/** Ties a position's description to its schema's output type. */
export function definePosition<P>(kind: SavedPositionKind<P>): SavedPositionKind<P> {
  return kind;
}

export interface SourceDescriptor<S extends ComponentSchema = ComponentSchema> extends Descriptor<S, Source> {
  readonly kind: "source";
  /** The position this source saves. */
  // `any`: the registry's list holds every type's position kind; definePosition checks each one.
  readonly position?: SavedPositionKind<any>;
}

export interface SinkDescriptor<S extends ComponentSchema = ComponentSchema> extends Descriptor<S, Sink> {
  readonly kind: "sink";
}

export type ComponentDescriptor = SourceDescriptor | SinkDescriptor;

/** Declares a source type; the identity function is there so `config` is typed from `schema` in every method. */
export function defineSource<S extends ComponentSchema>(descriptor: SourceDescriptor<S>): SourceDescriptor<S> {
  return descriptor;
}

export function defineSink<S extends ComponentSchema>(descriptor: SinkDescriptor<S>): SinkDescriptor<S> {
  return descriptor;
}
