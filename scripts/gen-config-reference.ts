/**
 * Writes README.md's configuration reference from the configuration's JSON Schema (src/config/json-schema.ts),
 * so the documented keys, types, defaults and descriptions cannot drift from what the agent accepts.
 *
 *   bun scripts/gen-config-reference.ts          rewrite the section between the markers
 *   bun scripts/gen-config-reference.ts --check  exit 1 when README.md is not what this would write
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configJsonSchema, type JsonSchema } from "../src/config/json-schema.ts";

export const START_MARKER = "<!-- config-reference:start -->";
export const END_MARKER = "<!-- config-reference:end -->";
export const README_PATH = join(import.meta.dir, "..", "README.md");

interface Row {
  key: string;
  type: string;
  value: string;
  description: string;
}

/** The Markdown between the markers (without them). */
export function renderReference(schema: JsonSchema = configJsonSchema()): string {
  const out = [
    "Generated from the configuration schema by `bun scripts/gen-config-reference.ts`; do not edit by hand.",
    "`nagare schema` prints the same schema as JSON Schema (draft 2020-12) for editors and linters.",
    "",
    ...legend(schema),
    "",
    "### Top level",
    "",
    ...table(objectRows(schema, "")),
    ...notes(schema),
  ];
  for (const record of ["sources", "sinks"]) out.push(...recordSections(schema, record));
  return `${out.join("\n")}\n`;
}

/** README text with the section between the markers replaced; throws when the markers are missing. */
export function updateReadme(readme: string, reference: string = renderReference()): string {
  const start = readme.indexOf(START_MARKER);
  const end = readme.indexOf(END_MARKER);
  if (start < 0 || end < start) throw new Error(`README.md has no ${START_MARKER} ... ${END_MARKER} section`);
  return `${readme.slice(0, start + START_MARKER.length)}\n${reference}${readme.slice(end)}`;
}

/** A message saying README.md is stale, or undefined when it is up to date. */
export function checkReadme(path: string = README_PATH): string | undefined {
  const readme = readFileSync(path, "utf8");
  if (updateReadme(readme) === readme) return undefined;
  return `${path}: the configuration reference is out of date with the config schema; run \`bun scripts/gen-config-reference.ts\``;
}

/** One bullet per shared definition (size, duration, template), which the tables use as type names. */
function legend(schema: JsonSchema): string[] {
  const defs = (schema.$defs ?? {}) as Record<string, JsonSchema>;
  return Object.entries(defs).map(([name, def]) => `- *${name}*: ${escape(String(def.description ?? ""))}`);
}

/** A `sources.<name>` / `sinks.<name>` subsection per component type. */
function recordSections(schema: JsonSchema, record: string): string[] {
  const node = properties(schema)[record] as JsonSchema;
  const branches = variants(node.additionalProperties as JsonSchema);
  return branches.flatMap((branch) => {
    const type = (properties(branch).type as JsonSchema | undefined)?.const;
    return [
      "",
      `### \`${record}.<name>\` with \`type: ${String(type)}\``,
      "",
      escape(String(branch.description ?? "")),
      "",
      ...table(objectRows(branch, `${record}.<name>.`)),
      ...notes(branch),
    ];
  });
}

/** Rows for every key of an object, nested objects (also inside `anyOf`) followed by their own keys. */
function objectRows(node: JsonSchema, prefix: string): Row[] {
  const required = new Set((node.required ?? []) as string[]);
  return Object.entries(properties(node)).flatMap(([key, child]) => {
    const path = `${prefix}${key}`;
    const row = { key: path, type: typeName(child), value: valueOf(child, required.has(key)), description: String(child.description ?? "") };
    if (child.propertyNames !== undefined) return [row]; // a record: its entries get their own sections
    const nested = variants(child).filter((v) => v.properties !== undefined);
    return [row, ...nested.flatMap((v) => objectRows(v, `${path}.`))];
  });
}

function typeName(node: JsonSchema): string {
  if (typeof node.$ref === "string") return `*${node.$ref.split("/").pop()}*`;
  if ("const" in node) return code(node.const);
  if (Array.isArray(node.enum)) return node.enum.map(code).join(" \\| ");
  if (Array.isArray(node.anyOf) || Array.isArray(node.oneOf)) return variants(node).map(typeName).join(" or ");
  switch (node.type) {
    case "object":
      return node.propertyNames !== undefined ? "mapping of names" : "mapping";
    case "array": {
      const least = typeof node.minItems === "number" && node.minItems > 0 ? ` (at least ${node.minItems})` : "";
      return `list of ${typeName(node.items as JsonSchema)}${least}`;
    }
    case "integer":
      return `integer${range(node)}`;
    case "string":
      return node.format === "uri" ? "URL" : "string";
    default:
      return String(node.type ?? "any");
  }
}

function range(node: JsonSchema): string {
  const min = node.minimum as number | undefined;
  const max = node.maximum === Number.MAX_SAFE_INTEGER ? undefined : (node.maximum as number | undefined);
  if (min !== undefined && max !== undefined) return ` ${min}–${max}`;
  if (min !== undefined) return ` ≥ ${min}`;
  return max !== undefined ? ` ≤ ${max}` : "";
}

/** The default as written in YAML; a mapping whose keys all have defaults is just "optional". */
function valueOf(node: JsonSchema, required: boolean): string {
  if (!("default" in node)) return required ? "required" : "optional";
  const value = node.default;
  if (value !== null && typeof value === "object" && !Array.isArray(value)) return "optional";
  return code(value);
}

function notes(node: JsonSchema): string[] {
  return typeof node.$comment === "string" ? ["", escape(node.$comment)] : [];
}

function table(rows: Row[]): string[] {
  return [
    "| key | type | default | description |",
    "| --- | --- | --- | --- |",
    ...rows.map((r) => `| \`${r.key}\` | ${r.type} | ${r.value} | ${escape(r.description)} |`),
  ];
}

function properties(node: JsonSchema): Record<string, JsonSchema> {
  return (node.properties ?? {}) as Record<string, JsonSchema>;
}

function variants(node: JsonSchema): JsonSchema[] {
  return ((node.oneOf ?? node.anyOf ?? [node]) as JsonSchema[]);
}

/** Strings as YAML shows them (unquoted), everything else as JSON. */
function code(value: unknown): string {
  return `\`${typeof value === "string" ? value : JSON.stringify(value)}\``;
}

/** A `|` would end the table cell; a newline the row. */
function escape(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

function main(args: string[]): number {
  if (args.includes("--check")) {
    const stale = checkReadme();
    if (stale === undefined) return 0;
    console.error(stale);
    return 1;
  }
  const readme = readFileSync(README_PATH, "utf8");
  const updated = updateReadme(readme);
  if (updated !== readme) writeFileSync(README_PATH, updated);
  console.log(updated === readme ? "README.md: configuration reference already up to date" : "README.md: configuration reference rewritten");
  return 0;
}

if (import.meta.main) process.exit(main(process.argv.slice(2)));
