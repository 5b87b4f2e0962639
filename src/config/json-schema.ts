/**
 * The configuration as users write it, as a JSON Schema (draft 2020-12): for editors (yaml-language-server,
 * VS Code), CI linters and `nagare schema`. It is generated from the zod schema, the one source of truth, with
 * zod's `io: "input"` view (sizes as number-or-string, defaults as written) and patched where zod's own output
 * loses a rule: transforms (sizes, durations) and custom checks (templates, `acks: none`, object-level rules).
 * Values are described as they are after `${VAR}` expansion.
 */
import { z } from "zod";
import { configSchema } from "./schema.ts";
import { tlsConfig } from "./types.ts";
import { journaldSourceConfig } from "../sources/journald/config.ts";

export type JsonSchema = Record<string, unknown>;

export const CONFIG_SCHEMA_ID = "https://nagare.dev/schema/config.json";

/** The number-or-unit strings that `parseSize`/`parseDuration` (units.ts) accept; units are case-insensitive. */
export const SIZE_PATTERN = String.raw`^\s*\d+(?:\.\d+)?\s*(?:[bB]|[kKmMgG][iI]?[bB]?)?\s*$`;
export const DURATION_PATTERN = String.raw`^\s*\d+(?:\.\d+)?\s*(?:[mM][sS]?|[sShH])?\s*$`;

/**
 * What `compileTemplate` (core/template.ts) accepts: text without `{{`/`}}`, and placeholders {{source}},
 * {{stream}}, {{field.NAME}}. A lone `{` may sit right before a placeholder ("{{{source}}"), as it does there.
 */
const PLACEHOLDER = String.raw`\{\{\s*(?:source|stream|field\.[^\s{}]+)\s*\}\}`;
export const TEMPLATE_PATTERN = String.raw`^(?:[^{}]|\{(?!\{)|\{(?=${PLACEHOLDER})|\}(?!\})|${PLACEHOLDER})*$`;

/** Shared definitions; the README reference names a field's type after the definition it refers to. */
const DEFS: Record<string, JsonSchema> = {
  size: {
    description: 'Bytes: a whole number, or a string with a unit such as "64MiB" (B; K/KB, M/MB, G/GB = 1000ⁿ; Ki/KiB, Mi/MiB, Gi/GiB = 1024ⁿ).',
    anyOf: [
      { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      { type: "string", pattern: SIZE_PATTERN },
    ],
  },
  duration: {
    description: 'Milliseconds: a number, or a string with a unit such as "500ms", "5s", "2m", "1h".',
    anyOf: [
      { type: "number", minimum: 0 },
      { type: "string", pattern: DURATION_PATTERN },
    ],
  },
  template: {
    description: "Text rendered per record; placeholders {{source}}, {{stream}} and {{field.NAME}} (a missing field renders empty).",
    type: "string",
    minLength: 1,
    pattern: TEMPLATE_PATTERN,
  },
};

/** Rules of the config that JSON Schema cannot state; `nagare validate` checks them. Rendered in the README too. */
const NOT_EXPRESSIBLE =
  "Checked by `nagare validate`, not by this schema: every sink input names a source, every source is read by a sink (with `include`, one that no sink reads is not started), " +
  "buffer.batch_max_bytes is at most buffer.max_bytes, files named in the config can be read and written.";

export function configJsonSchema(): JsonSchema {
  const generated = z.toJSONSchema(configSchema, {
    target: "draft-2020-12",
    io: "input",
    // Transforms and custom checks have no JSON Schema form; zod leaves them out and `patch` restores what it can.
    unrepresentable: "any",
    override: (ctx) => patch(ctx.zodSchema, ctx.jsonSchema as JsonSchema),
  }) as JsonSchema;
  const { $schema, ...rest } = generated;
  const schema: JsonSchema = {
    $schema,
    $id: CONFIG_SCHEMA_ID,
    title: "nagare configuration",
    description: "The nagare configuration file (YAML or JSON), with values as they are after ${VAR} expansion.",
    $comment: NOT_EXPRESSIBLE,
    ...rest,
    $defs: structuredClone(DEFS), // a fresh copy: callers may edit what they get
  };
  patchRecord(child(schema, "properties", "sources"), "source");
  patchRecord(child(schema, "properties", "sinks"), "sink");
  // The object-level check of schema.ts: without fragments, the file itself needs a source and a sink.
  schema.if = { required: ["include"] };
  schema.else = { required: ["sources", "sinks"], properties: { sources: { minProperties: 1 }, sinks: { minProperties: 1 } } };
  return schema;
}

/** `nagare schema`: the JSON Schema, pretty-printed, on stdout. */
export function printSchema(): void {
  process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
}

type ZodNode = z.core.$ZodType;

/** Called by zod for every schema node, children before the wrappers (default, optional) that inherit from them. */
function patch(zodSchema: ZodNode, json: JsonSchema): void {
  const unit = unitKind(zodSchema);
  if (unit !== undefined) return useDef(json, unit);
  if (isTemplate(zodSchema)) return useDef(json, "template");
  if (Array.isArray(json.enum)) json.enum = json.enum.filter((value) => z.safeParse(zodSchema, value).success);
  if (zodSchema === journaldSourceConfig) return patchJournald(json);
  if (zodSchema === tlsConfig) return patchTls(json);
}

/**
 * Sizes and durations are `union(number, string).transform(parse)`, opaque to zod's converter. They are told
 * apart by what they accept rather than by name, so a new size or duration field needs no change here.
 */
function unitKind(zodSchema: ZodNode): "size" | "duration" | undefined {
  const def = zodSchema._zod.def;
  if (def.type !== "pipe") return undefined;
  const { in: input, out } = def as z.core.$ZodPipeDef;
  if (input._zod.def.type !== "union" || out._zod.def.type !== "transform") return undefined;
  if (z.safeParse(zodSchema, "1KiB").success && !z.safeParse(zodSchema, "1s").success) return "size";
  if (z.safeParse(zodSchema, "1s").success && !z.safeParse(zodSchema, "1KiB").success) return "duration";
  return undefined;
}

/** A template is a string with a custom check that takes placeholders and refuses unknown ones. */
function isTemplate(zodSchema: ZodNode): boolean {
  const def = zodSchema._zod.def as z.core.$ZodStringDef;
  if (def.type !== "string" || !def.checks?.some((check) => check._zod.def.check === "custom")) return false;
  return z.safeParse(zodSchema, "{{source}}").success && !z.safeParse(zodSchema, "{{not_a_placeholder}}").success;
}

/** Replaces the node's type with a reference to a shared definition, keeping its description and default. */
function useDef(json: JsonSchema, name: keyof typeof DEFS & string): void {
  for (const key of Object.keys(json)) if (key !== "description" && key !== "default") delete json[key];
  json.$ref = `#/$defs/${name}`;
}

/** `sources` and `sinks`: `type` says which component. */
function patchRecord(json: JsonSchema, noun: string): void {
  for (const branch of child(json, "additionalProperties", "oneOf") as unknown as JsonSchema[]) {
    const type = child(branch, "properties", "type");
    type.description ??= `Which kind of ${noun} this is; it decides the other keys.`;
  }
}

/** The `.check` of the journald source: one way of reading, and journalctl-only options only with journalctl. */
function patchJournald(json: JsonSchema): void {
  child(json, "properties", "url").pattern = "^https?://";
  json.$comment = "`url` and `file` exclude each other; `directory` and `matches` apply only when reading through journalctl.";
  json.allOf = [
    { not: { required: ["url", "file"] } },
    {
      if: { anyOf: [{ required: ["url"] }, { required: ["file"] }] },
      then: { not: { anyOf: [{ required: ["directory"] }, { required: ["matches"], properties: { matches: { type: "array", minItems: 1 } } }] } },
    },
  ];
}

/** The `.check` of TLS settings: a client certificate needs its key and the other way round. */
function patchTls(json: JsonSchema): void {
  json.$comment = "`cert` and `key` go together.";
  json.dependentRequired = { cert: ["key"], key: ["cert"] };
}

function child(json: JsonSchema, ...keys: string[]): JsonSchema {
  let node = json;
  for (const key of keys) {
    const next = node[key];
    if (next === null || typeof next !== "object") throw new Error(`config JSON Schema: no "${keys.join(".")}"`);
    node = next as JsonSchema;
  }
  return node;
}
