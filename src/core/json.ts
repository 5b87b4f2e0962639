/**
 * The JSON shape of a record, shared by every sink that writes JSON: the fields as they are; a value that is
 * not valid UTF-8 becomes base64 under its own name (for a repeated field: every element), and the names of
 * such fields are listed in `_nagare_binary`; the record id is added under `idField` when the sink asks for it.
 */
import type { FieldValue, Fields, LogRecord } from "./record.ts";

export const BINARY_LIST_FIELD = "_nagare_binary";

export function encodeFieldsJson(record: LogRecord, idField: string | undefined): string {
  const fields = record.binaryFields === undefined ? record.fields : withBase64(record.fields, record.binaryFields);
  const json = JSON.stringify(fields);
  if (idField === undefined) return json;
  const id = `${JSON.stringify(idField)}:${JSON.stringify(record.id)}`;
  // Splice the id in rather than copying the fields object: this runs once per shipped record.
  return json.length === 2 ? `{${id}}` : `${json.slice(0, -1)},${id}}`;
}

/** A batch as JSON lines, each ending in a newline. */
export function encodeJsonLines(records: readonly LogRecord[], idField: string | undefined): string {
  let out = "";
  for (let i = 0; i < records.length; i++) out += `${encodeFieldsJson(records[i]!, idField)}\n`;
  return out;
}

function withBase64(fields: Fields, binary: readonly string[]): Fields {
  const copy: Fields = { ...fields };
  for (const name of binary) {
    const value = copy[name];
    if (value !== undefined) copy[name] = toBase64(value);
  }
  copy[BINARY_LIST_FIELD] = [...binary];
  return copy;
}

/** Every element of a binary field is base64 (text elements too), so a reader decodes them all alike. */
function toBase64(value: FieldValue): FieldValue {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
  if (typeof value === "string") return Buffer.from(value, "utf8").toString("base64");
  if (Array.isArray(value)) return value.map(toBase64);
  return value;
}
