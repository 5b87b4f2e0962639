/**
 * The one table that decides what a Kafka failure means for the records it concerns:
 *   retry     — transient (broker down, leader moved, timeouts, replicas short, throttling): the same record
 *               batch is sent again, with the same sequence numbers, for as long as it takes;
 *   record    — the broker never wrote the batch and never will as it is (too large, invalid): its records are
 *               sent one at a time and each one refused is dead-lettered; the rest are delivered;
 *   topic     — the topic can never exist (an illegal name): its records are dead-lettered;
 *   sequence  — the broker lost or does not know this producer's state: a new producer id is fetched and every
 *               batch not yet acknowledged is sequenced again (duplicates stay within what was in flight);
 *   duplicate — the broker already has this batch (an earlier attempt was written): it counts as delivered;
 *   config    — the setup is wrong (authentication, authorization, TLS, a missing topic): retried so nothing
 *               is lost, while the log says what to fix; backpressure holds the readers meanwhile.
 * Anything not in the table is retried: an unknown error must never drop records.
 *
 * A KafkaFailure is a NagareError about one request: `retryable` says whether the same record batch may be
 * sent again as it is (not for record and topic refusals, whose code is SINK_REJECTED). The sink answers the
 * driver in its own words: it splits and dead-letters refused records itself, so its answer stays retryable.
 */
import { describeError, NagareError } from "../../core/errors.ts";
import { KAFKA_ERROR_NAMES } from "./error-codes.ts";

type FailureKind = "retry" | "record" | "topic" | "sequence" | "duplicate" | "config";

export interface Classified {
  kind: FailureKind;
  /** The Kafka error name, or the transport's failure, for logs and metrics. */
  name: string;
  /** The error code the broker answered with; undefined for the transport's failures. */
  code?: number;
  /** What the operator should do, for config-level failures. */
  fix?: string;
}

const KIND_BY_NAME: Record<string, FailureKind> = {
  MESSAGE_TOO_LARGE: "record",
  RECORD_LIST_TOO_LARGE: "record",
  INVALID_RECORD: "record",
  CORRUPT_MESSAGE: "record",
  INVALID_TIMESTAMP: "record",
  INVALID_TOPIC_EXCEPTION: "topic",
  OUT_OF_ORDER_SEQUENCE_NUMBER: "sequence",
  UNKNOWN_PRODUCER_ID: "sequence",
  INVALID_PRODUCER_EPOCH: "sequence",
  PRODUCER_FENCED: "sequence",
  DUPLICATE_SEQUENCE_NUMBER: "duplicate",
};

const FIX_BY_NAME: Record<string, string> = {
  UNKNOWN_TOPIC_OR_PARTITION: "create the topic (topic auto-creation is off unless the sink sets allow_auto_create_topics: true)",
  TOPIC_AUTHORIZATION_FAILED: "grant the agent's principal WRITE (and DESCRIBE) on the topic",
  CLUSTER_AUTHORIZATION_FAILED: "grant the agent's principal IDEMPOTENT_WRITE on the cluster, or set idempotent: false",
  SASL_AUTHENTICATION_FAILED: "check sasl.username, sasl.password and sasl.mechanism against the users the brokers know",
  UNSUPPORTED_SASL_MECHANISM: "choose a sasl.mechanism the brokers enable (sasl.enabled.mechanisms)",
  ILLEGAL_SASL_STATE: "check that the brokers' listener at this address expects SASL",
  INVALID_REQUIRED_ACKS: "use acks: all or leader",
  UNSUPPORTED_VERSION: "the brokers are too old for this client (Kafka 2.1 or newer is needed)",
  UNSUPPORTED_COMPRESSION_TYPE: "choose a compression the brokers support (zstd needs Kafka 2.1 or newer)",
  TLS_REQUIRED: "the brokers' listener at this address speaks TLS: configure tls, or use their plaintext listener",
  TLS_FAILED: "check tls.ca (the CA that signed the brokers' certificates), tls.cert, tls.key and tls.servername",
  NO_COMMON_VERSION: "the brokers are too old for this client (Kafka 2.1 or newer is needed)",
};

/** The name of a Kafka protocol error code. */
export function kafkaErrorName(code: number): string {
  return KAFKA_ERROR_NAMES[code] ?? `KAFKA_ERROR_${code}`;
}

/** Classifies a Kafka error by its name (a protocol error name, or one of the transport names below). */
export function classifyKafkaName(name: string): Classified {
  const kind = KIND_BY_NAME[name];
  if (kind !== undefined) return { kind, name };
  const fix = FIX_BY_NAME[name];
  if (fix !== undefined) return { kind: "config", name, fix };
  return { kind: "retry", name };
}

/** Classifies a protocol error code from a response. */
export function classifyKafkaCode(code: number): Classified {
  return { ...classifyKafkaName(kafkaErrorName(code)), code };
}

/**
 * Names what a socket's failure (connecting, TLS, a reset) means. The broker connection raises its own
 * failures (timeouts, a TLS listener, SASL refusals) as KafkaFailures already; this names the socket's errors.
 */
export function transportFailureName(err: unknown): string {
  const chain: { code?: string; message?: string }[] = [];
  for (let e = err as { code?: string; message?: string; cause?: unknown } | undefined, depth = 0; e && depth < 6; e = e.cause as typeof e, depth++) chain.push(e);
  const text = chain.map((e) => `${e.code ?? ""} ${e.message ?? ""}`).join(" | ");
  if (/certificate|self[- ]signed|SSL|TLS|altnames|handshake/i.test(text)) return "TLS_FAILED";
  if (/timed out/i.test(text)) return "REQUEST_TIMED_OUT";
  if (/ECONNREFUSED/.test(text)) return "CONNECTION_REFUSED";
  return "NETWORK_EXCEPTION";
}

/** A classified failure of a Kafka request (a protocol error code, or the transport's failure). */
export class KafkaFailure extends NagareError {
  /** The broker's error code, when a broker answered with one. */
  readonly kafkaCode: number | undefined;

  /**
   * `transport`: the connection failed (a socket error, a close), which says nothing of what was being done
   * with it; the first caller that knows says it again in its own words (see `from`).
   */
  constructor(
    readonly classified: Classified,
    message: string,
    cause?: unknown,
    readonly transport = false,
  ) {
    const permanent = classified.kind === "record" || classified.kind === "topic";
    super(permanent ? "SINK_REJECTED" : "SINK_UNAVAILABLE", message, { cause, retryable: !permanent });
    this.kafkaCode = classified.code;
  }

  /**
   * Any thrown value as a KafkaFailure, in the words of what was being done: a socket's error is named from its
   * text, and a transport failure is described again by its root cause; a failure that already says what was
   * being done (a broker's answer, or one worded here before) keeps its words.
   */
  static from(err: unknown, doing: string): KafkaFailure {
    if (err instanceof KafkaFailure && !err.transport) return err;
    return KafkaFailure.worded(err, doing, false);
  }

  /** A connection's failure, whatever was thrown: marked `transport`, for the caller to word again. */
  static ofConnection(err: unknown, name: string): KafkaFailure {
    return err instanceof KafkaFailure ? err : KafkaFailure.worded(err, `the connection to ${name}`, true);
  }

  private static worded(err: unknown, doing: string, transport: boolean): KafkaFailure {
    const classified = err instanceof KafkaFailure ? err.classified : classifyKafkaName(transportFailureName(err));
    const root = rootCause(err);
    return new KafkaFailure(classified, `${doing} failed (${classified.name}: ${describeError(root)})`, root, transport);
  }
}

/** The innermost cause: the transport wraps socket and TLS errors in its own ("Connection to … failed."). */
function rootCause(err: unknown): unknown {
  let e = err;
  for (let depth = 0; depth < 6 && e instanceof Error && e.cause !== undefined && e.cause !== null; depth++) e = e.cause;
  return e;
}
