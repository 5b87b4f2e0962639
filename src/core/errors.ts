/**
 * The one error type of the agent. Every failure that crosses a module boundary is a NagareError with a code
 * from a closed set, a `retryable` flag that decides whether the same work may be tried again, and the
 * underlying cause when there is one.
 *
 * `retryable` is what the sink driver acts on: a sink's failed attempt that is retryable is sent again after
 * a backoff; one that is not settles the batch into the dead-letter file. Each code has a default (below);
 * a caller that knows better says so, e.g. a forward server that refuses the shared key is CONFIG_INVALID and
 * still retryable, because the operator fixes the key and the records must not be lost meanwhile.
 */
const RETRYABLE_BY_DEFAULT = {
  CONFIG_INVALID: false, // the configuration does not satisfy the schema or cross-checks
  MALFORMED_INPUT: false, // a peer produced bytes that do not follow its format
  SOURCE_FAILED: true, // a reader process or connection failed; the source restarts it
  SINK_UNAVAILABLE: true, // a destination cannot be written to right now
  SINK_REJECTED: false, // a destination refused records permanently: they go to the dead-letter file
  TIMEOUT: true, // a bounded wait expired
  CANCELLED: true, // a wait was cut short because the agent is stopping
  CHECKPOINT_IO: true, // a checkpoint could not be read or written
  CHECKPOINT_UNSUPPORTED: false, // a checkpoint was written by a newer format version; the operator decides
  DATA_DIR_LOCKED: false, // another agent holds the data directory
  INTERNAL: false, // a broken invariant inside the agent (a bug)
} as const;

export type ErrorCode = keyof typeof RETRYABLE_BY_DEFAULT;

export class NagareError extends Error {
  override readonly name = "NagareError";
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT[code];
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
