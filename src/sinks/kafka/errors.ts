/**
 * The one table that decides what a Kafka failure means for a batch:
 *   retry   — transient (broker down, leader moved, timeouts, replicas short, throttling): send the same
 *             messages again after backoff, for as long as it takes;
 *   record  — this message can never be accepted (too large, invalid): dead-letter it, deliver the rest;
 *   config  — the setup is wrong (unknown topic, authorization, SASL): keep retrying so nothing is lost, and
 *             say in the log what to fix. Backpressure holds the readers meanwhile.
 * Anything not in the table is retried: an unknown error must never drop records.
 */

export type FailureClass = "retry" | "record" | "config";

export interface Classified {
  kind: FailureClass;
  /** The Kafka error name (or the client's error name), for logs and metrics. */
  name: string;
  /** What the operator should do, for config-level failures. */
  fix?: string;
}

const RECORD_LEVEL = new Set(["MESSAGE_TOO_LARGE", "INVALID_RECORD", "CORRUPT_MESSAGE", "INVALID_TIMESTAMP", "INVALID_TOPIC_EXCEPTION", "RECORD_LIST_TOO_LARGE"]);

const CONFIG_LEVEL: Record<string, string> = {
  UNKNOWN_TOPIC_OR_PARTITION: "create the topic, or enable auto.create.topics.enable on the brokers",
  TOPIC_AUTHORIZATION_FAILED: "grant the agent's principal WRITE (and DESCRIBE) on the topic",
  CLUSTER_AUTHORIZATION_FAILED: "grant the agent's principal IDEMPOTENT_WRITE / cluster access",
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "grant the agent's principal access to its transactional id",
  SASL_AUTHENTICATION_FAILED: "check sasl.username, sasl.password and sasl.mechanism",
  UNSUPPORTED_SASL_MECHANISM: "choose a sasl.mechanism the brokers enable",
  ILLEGAL_SASL_STATE: "check the brokers' SASL listener configuration",
  INVALID_REQUIRED_ACKS: "use acks: all or leader",
  UNSUPPORTED_VERSION: "the brokers are too old for this client (Kafka 0.11 or newer is needed)",
  KafkaJSSASLAuthenticationError: "check sasl.username, sasl.password and sasl.mechanism",
};

/** Classifies an error thrown by the Kafka client (kafkajs errors carry `type` for protocol errors). */
export function classifyKafkaError(err: unknown): Classified {
  const e = unwrap(err) as { type?: string; name?: string; code?: string };
  const name = e?.type ?? e?.name ?? "UNKNOWN";
  if (RECORD_LEVEL.has(name)) return { kind: "record", name };
  const fix = CONFIG_LEVEL[name];
  if (fix !== undefined) return { kind: "config", name, fix };
  if (/certificate|self[- ]signed|SSL|TLS/i.test(String((e as { message?: string })?.message ?? ""))) {
    return { kind: "config", name, fix: "check tls.ca, tls.cert, tls.key and tls.servername against the brokers' certificates" };
  }
  return { kind: "retry", name };
}

/**
 * kafkajs wraps the error that happened in KafkaJSNumberOfRetriesExceeded or KafkaJSNonRetriableError, with
 * the original in `.cause` (the table is keyed by the original). Protocol errors it does not retry itself
 * (MESSAGE_TOO_LARGE, authorization) arrive unwrapped.
 */
function unwrap(err: unknown): unknown {
  let current = err as { type?: string; cause?: unknown } | undefined;
  for (let depth = 0; depth < 5 && current && current.type === undefined && current.cause; depth++) {
    current = current.cause as typeof current;
  }
  return current;
}
