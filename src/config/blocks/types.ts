/**
 * Zod building blocks shared by every component's config schema. Where a rule is a check zod's JSON Schema
 * converter cannot see (a transform, a custom check), the block carries its JSON Schema form as metadata, so
 * `nagare schema` gets it from the zod schema like everything else.
 */
import { z } from "zod";
import { DURATION_PATTERN, parseDuration, parseSize, SIZE_PATTERN } from "./units.ts";
import { compileTemplate, TEMPLATE_PATTERN } from "../../core/template.ts";

/**
 * A size or duration is `union(number, string).transform(parse)`, which zod's JSON Schema converter cannot see
 * into; each names a shared definition (`id`) with the JSON Schema form of what its parser accepts.
 */
const sizeInput = z.union([z.number(), z.string()]).meta({
  id: "size",
  description: 'Bytes: a whole number, or a string with a unit such as "64MiB" (B; K/KB, M/MB, G/GB = 1000ⁿ; Ki/KiB, Mi/MiB, Gi/GiB = 1024ⁿ).',
  anyOf: [
    { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    { type: "string", pattern: SIZE_PATTERN },
  ],
});

const durationInput = z.union([z.number(), z.string()]).meta({
  id: "duration",
  description: 'Milliseconds: a number, or a string with a unit such as "500ms", "5s", "2m", "1h".',
  anyOf: [
    { type: "number", minimum: 0 },
    { type: "string", pattern: DURATION_PATTERN },
  ],
});

/** A byte size: a number of bytes or a string like "64MiB". */
export function size(description: string, defaultValue?: string) {
  const schema = sizeInput
    .transform((value, ctx) => {
      const bytes = parseSize(value);
      if (bytes === undefined) {
        ctx.addIssue({ code: "custom", message: `expected a size such as 1048576 or "64MiB", got ${JSON.stringify(value)}` });
        return z.NEVER;
      }
      return bytes;
    })
    .describe(description);
  return defaultValue === undefined ? schema : schema.prefault(defaultValue);
}

/** A duration: milliseconds or a string like "500ms", "5s", "2m". */
export function duration(description: string, defaultValue?: string) {
  const schema = durationInput
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined) {
        ctx.addIssue({ code: "custom", message: `expected a duration such as 500 or "5s", got ${JSON.stringify(value)}` });
        return z.NEVER;
      }
      return ms;
    })
    .describe(description);
  return defaultValue === undefined ? schema : schema.prefault(defaultValue);
}

/** Component names become file names (checkpoints, dead letters) and metric labels. */
export const componentName = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, "names are 1-64 characters of letters, digits, '_', '-', '.'");

/** The sources a sink reads from. */
export const inputs = z
  .array(componentName)
  .min(1, "a sink needs at least one input")
  .describe("Names of the sources (keys under `sources`) whose records this sink receives.");

/** Whether and under which name the record id is written into each shipped record. */
export const idField = z
  .union([z.boolean(), z.string().min(1)])
  .default(false)
  .transform((v) => (v === true ? "_nagare_id" : v === false ? undefined : v))
  .describe("Write the record's deterministic id into the record: `true` for the field `_nagare_id`, or a field name.");

/** A per-record template ({{source}}, {{stream}}, {{field.NAME}}); checked when the config is loaded. */
const templateText = z
  .string()
  .min(1)
  .check((ctx) => {
    const compiled = compileTemplate(ctx.value);
    if (typeof compiled === "string") ctx.issues.push({ code: "custom", input: ctx.value, message: compiled });
  })
  .meta({
    id: "template",
    description: "Text rendered per record; placeholders {{source}}, {{stream}} and {{field.NAME}} (a missing field renders empty).",
    pattern: TEMPLATE_PATTERN,
  });

export function template(description: string) {
  return templateText.describe(description);
}

/** TLS client settings shared by network sinks. */
export const tlsConfig = z
  .strictObject({
    ca: z.string().min(1).optional().describe("PEM file with the CA certificates that sign the server's certificate (default: the system's)."),
    cert: z.string().min(1).optional().describe("PEM client certificate, for mutual TLS."),
    key: z.string().min(1).optional().describe("PEM private key of the client certificate."),
    verify: z.boolean().default(true).describe("Verify the server's certificate and name. Turn off only for tests."),
    servername: z.string().min(1).optional().describe("Server name for SNI and certificate verification, when it differs from the host."),
  })
  .check((ctx) => {
    if ((ctx.value.cert === undefined) !== (ctx.value.key === undefined)) {
      ctx.issues.push({ code: "custom", input: ctx.value, path: [ctx.value.cert === undefined ? "cert" : "key"], message: "cert and key go together" });
    }
  })
  .meta({
    description: "TLS to the destination; omit for plaintext.",
    $comment: "`cert` and `key` go together.",
    dependentRequired: { cert: ["key"], key: ["cert"] },
  });

export type TlsConfig = z.output<typeof tlsConfig>;
