/**
 * The JSON shape of a record, shared by every sink that writes JSON: the fields as they are; a value that is
 * not valid UTF-8 becomes base64 under its own name (for a repeated field: every element), and the names of
 * such fields are listed in `_nagare_binary`; the record id is added under `idField` when the sink asks for it.
 */
import { ByteWriter } from "./byte-writer.ts";
import type { FieldValue, Fields, LogRecord } from "./record.ts";

const BINARY_LIST_FIELD = "_nagare_binary";

export function encodeFieldsJson(record: LogRecord, idField: string | undefined): string {
  const fields = record.binaryFields === undefined ? record.fields : withBase64(record.fields, record.binaryFields);
  const json = JSON.stringify(fields);
  if (idField === undefined) return json;
  const id = `${JSON.stringify(idField)}:${JSON.stringify(record.id)}`;
  // Splice the id in rather than copying the fields object: this runs once per shipped record.
  return json.length === 2 ? `{${id}}` : `${json.slice(0, -1)},${id}}`;
}

/**
 * Writes the same JSON as encodeFieldsJson straight into bytes, without a string per record: for text values
 * that need no escaping (nearly all), the name and the value are copied into the buffer as UTF-8 directly;
 * anything else (escapes, surrogates, bytes, arrays, nested maps, numbers) goes through JSON.stringify. The
 * keys come in the same order as JSON.stringify's, so both encoders give identical output.
 */
export class JsonWriter extends ByteWriter {
  /** One record's JSON, then `terminator` (a byte such as a newline) unless it is -1. */
  record(record: LogRecord, idField: string | undefined, terminator = -1): void {
    if (record.binaryFields !== undefined) this.text(encodeFieldsJson(record, idField));
    else {
      const fields = record.fields;
      this.byte(123);
      let first = true;
      for (const name in fields) {
        if (!first) this.byte(44);
        first = false;
        this.member(name, fields[name]!);
      }
      if (idField !== undefined) {
        if (!first) this.byte(44);
        this.member(idField, record.id);
      }
      this.byte(125);
    }
    if (terminator >= 0) this.byte(terminator);
  }

  private member(name: string, value: FieldValue): void {
    if (NEEDS_STRINGIFY.test(name)) this.text(JSON.stringify(name));
    else this.quoted(name);
    this.byte(58);
    if (typeof value === "string" && !NEEDS_STRINGIFY.test(value)) this.quoted(value);
    else this.text(JSON.stringify(value));
  }

  private quoted(text: string): void {
    this.room(text.length * 3 + 2);
    const buf = this.buf;
    buf[this.pos++] = 34;
    this.pos += buf.utf8Write(text, this.pos);
    buf[this.pos++] = 34;
  }

  private text(text: string): void {
    this.room(text.length * 3);
    this.pos += this.buf.utf8Write(text, this.pos);
  }

}

/** Characters JSON.stringify escapes (quote, backslash, controls) or may (surrogates): those values take its path. */
const NEEDS_STRINGIFY = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A batch as JSON lines, each ending in a newline, as bytes. */
export function encodeJsonLines(records: readonly LogRecord[], idField: string | undefined, writer = new JsonWriter()): Buffer {
  for (let i = 0; i < records.length; i++) writer.record(records[i]!, idField, 10);
  return writer.take();
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
