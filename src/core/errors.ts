/**
 * The one error type of the agent. Every failure that crosses a module boundary is a NagareError with a code
 * from a closed set, a `retryable` flag that decides whether the same work may be tried again, and the
 * underlying cause when there is one.
 */
export const ERROR_CODES = [
  "CONFIG_INVALID", // the configuration does not satisfy the schema or cross-checks
  "CONFIG_UNREADABLE", // the configuration file cannot be read or parsed as YAML/JSON
  "MALFORMED_INPUT", // a source produced bytes that do not follow its format
  "LIMIT_EXCEEDED", // a record, field or frame is larger than a configured hard limit
  "SOURCE_FAILED", // a reader process or connection failed; the source restarts it
  "SINK_UNAVAILABLE", // a destination cannot be written to right now (retryable)
  "SINK_REJECTED", // a destination refused a record permanently (dead-lettered)
  "TIMEOUT", // a bounded wait expired
  "CANCELLED", // a wait was cut short because the agent is stopping
  "CHECKPOINT_IO", // a checkpoint could not be read or written
  "CHECKPOINT_UNSUPPORTED", // a checkpoint was written by a newer format version; the operator decides
  "DATA_DIR_LOCKED", // another agent holds the data directory
  "INTERNAL", // a broken invariant inside the agent (a bug)
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class NagareError extends Error {
  override readonly name = "NagareError";
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A one-line description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof NagareError) {
    const cause = err.cause === undefined ? "" : describeError(err.cause);
    // A message that already tells its cause ("cannot connect to X: connect ECONNREFUSED …") is not repeated.
    return cause === "" || err.message.includes(cause) ? err.message : `${err.message}: ${cause}`;
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
