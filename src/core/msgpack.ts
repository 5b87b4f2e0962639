/**
 * Records' fields as msgpack, written straight into one growing buffer: no intermediate objects per record
 * and no JavaScript UTF-8 counting (a string's byte length and its bytes come from one native call each).
 *
 *   nil 0xc0 | false 0xc2 | true 0xc3
 *   int     positive fixint 0x00-0x7f, negative fixint 0xe0-0xff, uint8/16/32 0xcc-0xce, int8/16/32 0xd0-0xd2
 *   float64 0xcb + 8 bytes (every other number)
 *   str     fixstr 0xa0|len (< 32), str8 0xd9, str16 0xda, str32 0xdb + UTF-8
 *   bin     bin8 0xc4, bin16 0xc5, bin32 0xc6 + bytes
 *   array   fixarray 0x90|n (< 16), array16 0xdc, array32 0xdd
 *   map     fixmap 0x80|n (< 16), map16 0xde, map32 0xdf
 *   fixext8 0xd7 type + 8 bytes (the forward protocol's EventTime is type 0)
 */
import { ByteWriter } from "./byte-writer.ts";
import type { FieldValue, Fields } from "./record.ts";

export class MsgpackWriter extends ByteWriter {
  private readonly keys = new Map<string, Buffer>();

  /** A map of the fields, plus `idField` = `id` when given. */
  fields(fields: Fields, idField?: string, id?: string): void {
    let count = 0;
    for (const _ in fields) count++;
    this.header(count + (idField === undefined ? 0 : 1), 0x80, 0xde, 16);
    for (const name in fields) {
      this.key(name);
      this.value(fields[name]!);
    }
    if (idField !== undefined) {
      this.key(idField);
      this.str(id ?? "");
    }
  }

  value(v: FieldValue | null | undefined): void {
    if (typeof v === "string") this.str(v);
    else if (v instanceof Uint8Array) this.bin(v);
    else if (Array.isArray(v)) {
      this.arrayHeader(v.length);
      for (const item of v) this.value(item);
    } else if (typeof v === "number") this.number(v);
    else if (typeof v === "boolean") this.byte(v ? 0xc3 : 0xc2);
    else if (v === null || v === undefined) this.byte(0xc0);
    else this.fields(v);
  }

  arrayHeader(n: number): void {
    this.header(n, 0x90, 0xdc, 16);
  }

  /** fixext8: a one-byte type and two big-endian uint32 (the forward EventTime: seconds, nanoseconds). */
  ext8(type: number, hi: number, lo: number): void {
    this.room(10);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = 0xd7;
    buf[p++] = type;
    buf[p++] = hi >>> 24;
    buf[p++] = hi >>> 16;
    buf[p++] = hi >>> 8;
    buf[p++] = hi;
    buf[p++] = lo >>> 24;
    buf[p++] = lo >>> 16;
    buf[p++] = lo >>> 8;
    buf[p++] = lo;
    this.pos = p;
  }

  /** A map key: the few distinct names are encoded once and copied from then on. */
  key(name: string): void {
    let encoded = this.keys.get(name);
    if (encoded === undefined) {
      const start = this.pos;
      this.str(name);
      encoded = Buffer.from(this.buf.subarray(start, this.pos));
      if (this.keys.size < 4096) this.keys.set(name, encoded);
      return;
    }
    this.room(encoded.length);
    this.buf.set(encoded, this.pos);
    this.pos += encoded.length;
  }

  str(s: string): void {
    const n = Buffer.byteLength(s);
    this.room(n + 5);
    if (n < 32) this.buf[this.pos++] = 0xa0 | n;
    else if (n < 0x100) {
      this.buf[this.pos++] = 0xd9;
      this.buf[this.pos++] = n;
    } else this.sized(n, 0xda);
    this.pos += this.buf.utf8Write(s, this.pos);
  }

  bin(b: Uint8Array): void {
    this.room(b.length + 5);
    if (b.length < 0x100) {
      this.buf[this.pos++] = 0xc4;
      this.buf[this.pos++] = b.length;
    } else this.sized(b.length, 0xc5);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  private number(v: number): void {
    this.room(9);
    const buf = this.buf;
    if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0xffff_ffff) {
      buf[this.pos++] = 0xcb;
      this.pos = buf.writeDoubleBE(v, this.pos);
    } else if (v >= 0 && v < 0x80) buf[this.pos++] = v;
    else if (v < 0 && v >= -32) buf[this.pos++] = v & 0xff;
    else if (v >= 0) this.pos = v < 0x10000 ? this.uint16(v) : buf.writeUInt32BE(v, this.typed(0xce));
    else this.pos = v >= -0x8000 ? buf.writeInt16BE(v, this.typed(0xd1)) : buf.writeInt32BE(v, this.typed(0xd2));
  }

  private uint16(v: number): number {
    return v < 0x100 ? this.buf.writeUInt8(v, this.typed(0xcc)) : this.buf.writeUInt16BE(v, this.typed(0xcd));
  }

  /** Writes a type byte; returns where the value goes. */
  private typed(code: number): number {
    this.buf[this.pos] = code;
    return this.pos + 1;
  }

  /** A container or str/bin header: fix form below `fixLimit`, else the 16- or 32-bit form (`code`, `code + 1`). */
  private header(n: number, fix: number, code: number, fixLimit: number): void {
    this.room(5);
    if (n < fixLimit) this.buf[this.pos++] = fix | n;
    else this.sized(n, code);
  }

  private sized(n: number, code16: number): void {
    if (n < 0x10000) {
      this.buf[this.pos++] = code16;
      this.pos = this.buf.writeUInt16BE(n, this.pos);
    } else {
      this.buf[this.pos++] = code16 + 1;
      this.pos = this.buf.writeUInt32BE(n, this.pos);
    }
  }
}
