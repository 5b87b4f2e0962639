/**
 * A record is one log entry travelling from a source to the sinks. Its fields are shipped as they are;
 * everything else is routing, accounting and acknowledgement metadata.
 */

/** A field value as sources produce it: text, raw bytes (not valid UTF-8), a repeated field, or a nested map. */
export type FieldValue = string | number | boolean | Uint8Array | FieldValue[] | { [key: string]: FieldValue };

export type Fields = { [key: string]: FieldValue };

export interface LogRecord<Position = unknown> {
  /** Wall-clock time of the entry: whole seconds since the epoch plus nanoseconds (forward EventTime shape). */
  timeSec: number;
  timeNsec: number;
  /** The fields shipped to the destination. */
  fields: Fields;
  /**
   * Names of top-level fields holding bytes that are not valid UTF-8 (directly or inside a repeated field),
   * or undefined when there are none. Lets encoders skip scanning every value.
   */
  binaryFields: string[] | undefined;
  /** The configured source name (`sources.<name>`). */
  source: string;
  /** The ordered stream inside the source: "journal", or a container id. Acks are tracked per stream. */
  stream: string;
  /** Deterministic id derived from the source position; identical on every retry and after restarts. */
  readonly id: string;
  /** Bytes this record counts against `buffer.max_bytes`: the source's estimate of its size in memory. */
  readonly size: number;
  /** The source's position just after this record; only the source that made it turns it into a checkpoint. */
  readonly position: Position;
}
