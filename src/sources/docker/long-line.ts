/**
 * A physical line too long to hold while it streams past: only its first bytes (enough for max_line_bytes of text
 * and the CRI prefix or json-file key) and its last TAIL_BYTES (json-file's stream, attrs and time come last) are
 * kept, whatever its length. At its newline it becomes one record, cut and marked (codec.ts decodeLongLine).
 */
import { decodeLongLine, type DecodedLine, type LogFormat } from "./codec.ts";

/** Room kept for the end of a json-file entry: the envelope and attrs (labels and env from --log-opt). */
const TAIL_BYTES = 64 * 1024;

/** Both buffers are allocated once: a line of any length streams past without allocating per read. */
export class LongLine {
  private readonly headBuffer: Buffer;
  private headLength = 0;
  private readonly tailBuffer = Buffer.allocUnsafe(TAIL_BYTES);
  private tailLength = 0;
  /** Bytes of the line seen so far, without its newline. */
  length = 0;

  constructor(headBytes: number) {
    this.headBuffer = Buffer.allocUnsafe(headBytes);
  }

  get head(): Buffer {
    return this.headBuffer.subarray(0, this.headLength);
  }

  /** The next bytes of the line (none of them a newline). */
  add(bytes: Buffer): void {
    if (this.headLength < this.headBuffer.length) {
      const n = Math.min(bytes.length, this.headBuffer.length - this.headLength);
      bytes.copy(this.headBuffer, this.headLength, 0, n);
      this.headLength += n;
    }
    if (bytes.length >= TAIL_BYTES) {
      bytes.copy(this.tailBuffer, 0, bytes.length - TAIL_BYTES);
      this.tailLength = TAIL_BYTES;
    } else {
      const keep = Math.min(this.tailLength, TAIL_BYTES - bytes.length);
      this.tailBuffer.copyWithin(0, this.tailLength - keep, this.tailLength);
      bytes.copy(this.tailBuffer, keep);
      this.tailLength = keep + bytes.length;
    }
    this.length += bytes.length;
  }

  decode(format: LogFormat): DecodedLine {
    return decodeLongLine(this.head, this.tailBuffer.subarray(0, this.tailLength), format);
  }
}
