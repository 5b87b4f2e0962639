/**
 * The configuration schema: the one source of truth for keys, types, defaults and descriptions. Each component
 * type owns its schema in its own folder and is listed in the registry; this file puts them under `sources` and
 * `sinks` next to the global settings. The schema follows the registry, so it is built when first asked for.
 */
import { z } from "zod";
import { componentName, duration, size } from "./blocks/types.ts";
import { registryVersion, sinkDescriptors, sourceDescriptors, type SinkSchemas, type SourceSchemas } from "../registry.ts";

export type { SinkConfig, SourceConfig } from "../registry.ts";

type SourceUnion = z.ZodDiscriminatedUnion<SourceSchemas, "type">;
type SinkUnion = z.ZodDiscriminatedUnion<SinkSchemas, "type">;

const bufferConfig = z
  .strictObject({
    max_bytes: size("Bytes of records held between reading and acknowledgement; readers pause at this limit.", "64MiB"),
    batch_max_bytes: size("A batch is sent when it holds this many bytes.", "1MiB"),
    batch_max_records: z.number().int().min(1).default(2000).describe("A batch is sent when it holds this many records."),
    batch_timeout: duration("A batch that is not full is sent this long after its first record.", "200ms"),
  })
  .prefault({} as never)
  .describe("The memory-bounded window between sources and sinks.");

function buildConfigSchema(sourceConfig: SourceUnion, sinkConfig: SinkUnion) {
  return z
    .strictObject({
      data_dir: z.string().min(1).default("/var/lib/nagare").describe("Directory for checkpoints and dead letters."),
      buffer: bufferConfig,
      checkpoint_interval: duration("How often acknowledged positions are saved.", "1s"),
      shutdown_timeout: duration("On SIGTERM, how long to wait for outstanding acknowledgements.", "30s"),
      api: z
        .union([
          z.literal(false),
          z.strictObject({
            address: z
              .string()
              .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, "expected host:port")
              .default("127.0.0.1:24280")
              .describe("Where the HTTP API listens: GET /metrics (Prometheus), GET /health, POST /reload."),
          }),
        ])
        .prefault({} as never)
        .describe("The HTTP API; `false` turns it off."),
      health: z
        .strictObject({
          max_stall: duration("/health answers 503 once, for this long, a sink with records waiting delivered nothing, a source could not read (permission denied, program or directory missing, server unreachable), or a checkpoint could not be saved.", "60s"),
        })
        .prefault({} as never)
        .describe("What /health checks."),
      dead_letter: z
        .strictObject({
          max_bytes: size("A sink's dead-letter file is rotated before a write would take it past this size.", "100MiB"),
          max_files: z
            .number()
            .int()
            .min(2)
            .default(5)
            .describe("Dead-letter files kept per sink, the current one included; the oldest beyond this is deleted (its records are lost, logged as an ERROR)."),
        })
        .prefault({} as never)
        .describe("Records a destination refused permanently, one JSON object per line in `dead-letter/<sink>.jsonl` under data_dir."),
      log: z
        .strictObject({
          level: z.enum(["debug", "info", "warn", "error"]).default("info").describe("Lowest level of the agent's own log."),
        })
        .prefault({} as never)
        .describe("The agent's own log: JSON lines on stderr."),
      include: z
        .array(z.string().min(1))
        .optional()
        .describe(
          "Config fragments: glob patterns (relative ones from this file's directory) of files with more `sources` and `sinks`, e.g. one file per team in `/etc/nagare/conf.d/*.yaml`. Each file is checked on its own; a broken one is refused alone and the others run.",
        ),
      sources: z.record(componentName, sourceConfig).default({}).describe("Named sources (at least one, unless `include` names fragments)."),
      sinks: z.record(componentName, sinkConfig).default({}).describe("Named sinks; each names its `inputs` (at least one, unless `include` names fragments)."),
    })
    .check((ctx) => {
      const { sources, sinks, buffer, include } = ctx.value;
      // With fragments, the main file may hold only global settings, and its sources may be read by fragments' sinks.
      if (include === undefined) {
        if (Object.keys(sources).length === 0) ctx.issues.push({ code: "custom", input: sources, path: ["sources"], message: "at least one source is needed" });
        if (Object.keys(sinks).length === 0) ctx.issues.push({ code: "custom", input: sinks, path: ["sinks"], message: "at least one sink is needed" });
      }
      const read = new Set<string>();
      for (const [sinkName, sink] of Object.entries(sinks)) {
        sink.inputs.forEach((input, i) => {
          read.add(input);
          if (!(input in sources)) {
            const known = Object.keys(sources).join(", ");
            ctx.issues.push({
              code: "custom",
              input,
              path: ["sinks", sinkName, "inputs", i],
              message: `unknown source "${input}" (sources: ${known})`,
            });
          }
        });
      }
      for (const name of Object.keys(sources)) {
        if (!read.has(name) && include === undefined) {
          ctx.issues.push({ code: "custom", input: name, path: ["sources", name], message: "no sink reads this source (add it to a sink's inputs)" });
        }
      }
      if (buffer.batch_max_bytes > buffer.max_bytes) {
        ctx.issues.push({
          code: "custom",
          input: buffer,
          path: ["buffer", "batch_max_bytes"],
          message: "must not be larger than buffer.max_bytes",
        });
      }
    });
}

export type Config = z.output<ReturnType<typeof buildConfigSchema>>;

export interface Schemas {
  /** One entry under `sources`: the union of the registered source types, told apart by `type`. */
  source: SourceUnion;
  sink: SinkUnion;
  config: ReturnType<typeof buildConfigSchema>;
}

let cached: { version: number; schemas: Schemas } | undefined;

/** The schemas of the registered component types and of the whole config. */
export function schemas(): Schemas {
  if (cached !== undefined && cached.version === registryVersion()) return cached.schemas;
  // The tuple types name the built-in types; a type registered at run time is checked the same way.
  const source = z.discriminatedUnion("type", sourceDescriptors().map((d) => d.schema) as unknown as SourceSchemas);
  const sink = z.discriminatedUnion("type", sinkDescriptors().map((d) => d.schema) as unknown as SinkSchemas);
  cached = { version: registryVersion(), schemas: { source, sink, config: buildConfigSchema(source, sink) } };
  return cached.schemas;
}
