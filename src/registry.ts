/**
 * The one list of component types. Each type is declared by the descriptor in its own folder; everything that
 * depends on the set of types (the config schema and its JSON Schema, `validate`'s checks and probes, building
 * the pipeline, the help text) asks here. Adding a type: its folder, and one line below.
 */
import type { z } from "zod";
import type { Sink, Source } from "./core/component.ts";
import type { BuildDeps, ComponentDescriptor, SinkDescriptor, SourceDescriptor } from "./core/descriptor.ts";
import { NagareError } from "./core/errors.ts";
import { journald } from "./sources/journald/descriptor.ts";
import { docker } from "./sources/docker/descriptor.ts";
import { consoleSink } from "./sinks/console/descriptor.ts";
import { fileSink } from "./sinks/file/descriptor.ts";
import { kafkaSink } from "./sinks/kafka/descriptor.ts";
import { forwardSink } from "./sinks/forward/descriptor.ts";

const BUILT_IN_SOURCES = [journald, docker] as const;
const BUILT_IN_SINKS = [consoleSink, fileSink, kafkaSink, forwardSink] as const;

/** The config of a built-in source or sink, by type (a type registered at run time is not in these unions). */
export type SourceConfig = z.output<(typeof BUILT_IN_SOURCES)[number]["schema"]>;
export type SinkConfig = z.output<(typeof BUILT_IN_SINKS)[number]["schema"]>;
/** The built-in schemas as a tuple type, for zod's discriminated unions over `sourceDescriptors()` / `sinkDescriptors()`. */
export type SourceSchemas = SchemasOf<typeof BUILT_IN_SOURCES>;
export type SinkSchemas = SchemasOf<typeof BUILT_IN_SINKS>;
type SchemasOf<T extends readonly { schema: unknown }[]> = { -readonly [K in keyof T]: T[K] extends { schema: infer S } ? S : never };

const sources = new Map<string, SourceDescriptor>();
const sinks = new Map<string, SinkDescriptor>();
const builders = new Map<ComponentDescriptor, (name: string, config: never, deps: BuildDeps) => Source | Sink>();
let version = 0;

/**
 * Adds a component type. The built-in ones are registered here; an embedding program or a test registers its own
 * before loading a config. A type name is taken once: sources and sinks share one namespace, as the help lists them.
 * Returns what removes the type again (a test's own type must not outlive the test).
 */
export function register(descriptor: ComponentDescriptor): () => void {
  if (sources.has(descriptor.type) || sinks.has(descriptor.type)) {
    throw new NagareError("INTERNAL", `component type "${descriptor.type}" is registered twice`);
  }
  const table: Map<string, ComponentDescriptor> = descriptor.kind === "source" ? sources : sinks;
  table.set(descriptor.type, descriptor);
  version++;
  return () => {
    if (table.get(descriptor.type) !== descriptor) return;
    table.delete(descriptor.type);
    builders.delete(descriptor);
    version++;
  };
}

for (const descriptor of [...BUILT_IN_SOURCES, ...BUILT_IN_SINKS]) register(descriptor as unknown as ComponentDescriptor);

/** Changes whenever a type is registered, so what is derived from the registry (the config schema) can be cached. */
export function registryVersion(): number {
  return version;
}

export function sourceDescriptors(): SourceDescriptor[] {
  return [...sources.values()];
}

export function sinkDescriptors(): SinkDescriptor[] {
  return [...sinks.values()];
}

export function sourceDescriptor(type: string): SourceDescriptor | undefined {
  return sources.get(type);
}

export function sinkDescriptor(type: string): SinkDescriptor | undefined {
  return sinks.get(type);
}

/**
 * Loads the implementations of the types a config uses (every registered type without one). `nagare run`
 * awaits this before building anything, and a reload before it plans, so that building stays synchronous (a
 * reload plans its changes in one step) while `validate`, `schema` and `version` never load clients, codecs or
 * WebAssembly, and an agent without a kafka sink never loads the Kafka client.
 */
export async function loadImplementations(config?: { sources: Record<string, { type: string }>; sinks: Record<string, { type: string }> }): Promise<void> {
  const wanted =
    config === undefined
      ? [...sources.values(), ...sinks.values()]
      : [...Object.values(config.sources).map((c) => sources.get(c.type)), ...Object.values(config.sinks).map((c) => sinks.get(c.type))];
  await Promise.all(
    wanted.map(async (descriptor) => {
      if (descriptor === undefined || builders.has(descriptor)) return;
      const { build } = await descriptor.implementation();
      builders.set(descriptor, build as (name: string, config: never, deps: BuildDeps) => Source | Sink);
    }),
  );
}

export function buildSource(name: string, config: { type: string }, deps: BuildDeps): Source {
  return builderOf(sources.get(config.type), config.type)(name, config as never, deps) as Source;
}

export function buildSink(name: string, config: { type: string }, deps: BuildDeps): Sink {
  return builderOf(sinks.get(config.type), config.type)(name, config as never, deps) as Sink;
}

function builderOf(descriptor: ComponentDescriptor | undefined, type: string) {
  const build = descriptor === undefined ? undefined : builders.get(descriptor);
  if (build === undefined) {
    // A bug, not a config problem: the schema admits only registered types, and run loads them all first.
    throw new NagareError("INTERNAL", `component type "${type}" is ${descriptor === undefined ? "not registered" : "not loaded (loadImplementations() was not awaited)"}`);
  }
  return build;
}
