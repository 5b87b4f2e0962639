/**
 * Templates for per-record names (Kafka topic and key, forward tag):
 *
 *   template    = *( literal / placeholder )
 *   placeholder = "{{" ( "source" / "stream" / "field." name ) "}}"
 *
 * A missing field renders empty. A repeated field renders its values joined by ","; bytes render as UTF-8.
 * Compiled once per config, so rendering a record is a walk over a few parts with no parsing.
 */
import type { FieldValue, LogRecord } from "./record.ts";

type Part = { kind: "text"; text: string } | { kind: "source" } | { kind: "stream" } | { kind: "field"; name: string };

export interface Template {
  readonly text: string;
  /** The constant value when the template has no placeholder. */
  readonly constant: string | undefined;
  render(record: LogRecord): string;
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const FIELD_NAME = String.raw`field\.[^\s{}]+`;
const FIELD = new RegExp(`^${FIELD_NAME}$`);

/**
 * What `compileTemplate` accepts, as one regular expression for JSON Schema (`nagare schema`): text without
 * `{{`/`}}`, and the placeholders. A lone `{` may sit right before a placeholder ("{{{source}}"), as it does here.
 */
const KNOWN_PLACEHOLDER = String.raw`\{\{\s*(?:source|stream|${FIELD_NAME})\s*\}\}`;
export const TEMPLATE_PATTERN = String.raw`^(?:[^{}]|\{(?!\{)|\{(?=${KNOWN_PLACEHOLDER})|\}(?!\})|${KNOWN_PLACEHOLDER})*$`;

/** Compiles a template, or returns a message saying what is wrong with it. */
export function compileTemplate(text: string): Template | string {
  const parts: Part[] = [];
  let last = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push({ kind: "text", text: text.slice(last, m.index) });
    const inner = m[1] ?? "";
    if (inner === "source") parts.push({ kind: "source" });
    else if (inner === "stream") parts.push({ kind: "stream" });
    else if (FIELD.test(inner)) parts.push({ kind: "field", name: inner.slice("field.".length) });
    else return `unknown placeholder {{${inner}}} (use {{source}}, {{stream}} or {{field.NAME}})`;
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push({ kind: "text", text: text.slice(last) });
  for (const p of parts) if (p.kind === "text" && (p.text.includes("{{") || p.text.includes("}}"))) return `unbalanced braces in "${text}"`;
  const literal = parts.every((p) => p.kind === "text") ? parts.map((p) => (p as { text: string }).text).join("") : undefined;
  return new CompiledTemplate(text, parts, literal);
}

class CompiledTemplate implements Template {
  constructor(
    readonly text: string,
    private readonly parts: readonly Part[],
    readonly constant: string | undefined,
  ) {}

  render(record: LogRecord): string {
    if (this.constant !== undefined) return this.constant;
    let out = "";
    for (const part of this.parts) {
      switch (part.kind) {
        case "text":
          out += part.text;
          break;
        case "source":
          out += record.source;
          break;
        case "stream":
          out += record.stream;
          break;
        case "field":
          out += renderValue(record.fields[part.name]);
          break;
      }
    }
    return out;
  }
}

function renderValue(value: FieldValue | undefined): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("utf8");
  if (Array.isArray(value)) return value.map(renderValue).join(",");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
