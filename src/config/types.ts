/** Zod building blocks shared by every component's config schema. */
import { z } from "zod";
import { parseDuration, parseSize } from "./units.ts";
import { compileTemplate } from "../core/template.ts";

/** A byte size: a number of bytes or a string like "64MiB". */
export function size(description: string, defaultValue?: string) {
  const schema = z
    .union([z.number(), z.string()])
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
  const schema = z
    .union([z.number(), z.string()])
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
export function template(description: string) {
  return z
    .string()
    .min(1)
    .check((ctx) => {
      const compiled = compileTemplate(ctx.value);
      if (typeof compiled === "string") ctx.issues.push({ code: "custom", input: ctx.value, message: compiled });
    })
    .describe(description);
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
  .describe("TLS to the destination; omit for plaintext.");

export type TlsConfig = z.output<typeof tlsConfig>;
