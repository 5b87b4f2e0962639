/**
 * A growable byte buffer that encoders write records into directly (JSON lines, msgpack): one buffer reused
 * from batch to batch, grown by doubling, handed over whole when the caller keeps the bytes.
 */

/** Buffer#utf8Write (Node and Bun have it; the typings do not): writes a string as UTF-8, returns the bytes. */
export type Utf8Buffer = Buffer & { utf8Write(text: string, offset: number): number };

export class ByteWriter {
  protected buf: Utf8Buffer = Buffer.allocUnsafeSlow(256 * 1024) as Utf8Buffer;
  protected pos = 0;

  /** The bytes written so far (a view: valid until the next write, reset or take). */
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** Hands over the bytes written so far; the writer starts empty with a new buffer. */
  take(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafeSlow(Math.max(256 * 1024, this.pos)) as Utf8Buffer;
    this.pos = 0;
    return out;
  }

  reset(): void {
    this.pos = 0;
  }

  protected byte(b: number): void {
    if (this.pos >= this.buf.length) this.room(1);
    this.buf[this.pos++] = b;
  }

  /** Makes sure `bytes` more fit. */
  protected room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.pos + bytes)) as Utf8Buffer;
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }
}
