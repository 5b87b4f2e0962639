/**
 * What the nodes of the test Kafka cluster (kafka-cluster.ts) are given: their ports, the TLS files, the users,
 * and each node's server.properties. Nothing here starts a broker.
 */
import { readFileSync } from "node:fs";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { reap, track, type Proc } from "./kafka.ts";

export type BrokerId = 1 | 2 | 3;
export const BROKER_IDS: readonly BrokerId[] = [1, 2, 3];
export type ClientListener = "plaintext" | "ssl" | "saslPlaintext" | "saslSsl";
export type SaslMechanism = "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512";

export interface ClusterUser {
  username: string;
  password: string;
}

/** The users every cluster has; each SCRAM user has credentials for its own mechanism only. */
export const CLUSTER_USERS = {
  scram256: { username: "scram256user", password: "scram256-secret" },
  scram512: { username: "scram512user", password: "scram512-secret" },
  plain: { username: "plainuser", password: "plain-secret" },
} as const satisfies Record<string, ClusterUser>;

const USER_BY_MECHANISM: Record<SaslMechanism, ClusterUser> = {
  PLAIN: CLUSTER_USERS.plain,
  "SCRAM-SHA-256": CLUSTER_USERS.scram256,
  "SCRAM-SHA-512": CLUSTER_USERS.scram512,
};

/** StorageTool format arguments that create the SCRAM users (in the metadata log, before the first start). */
export const SCRAM_FORMAT_ARGS = [
  "--add-scram", `SCRAM-SHA-256=[name=${CLUSTER_USERS.scram256.username},password=${CLUSTER_USERS.scram256.password}]`,
  "--add-scram", `SCRAM-SHA-512=[name=${CLUSTER_USERS.scram512.username},password=${CLUSTER_USERS.scram512.password}]`,
];

export interface KafkaClusterOptions {
  /** auto.create.topics.enable (default false: a test creates its topics with createTopic). */
  autoCreateTopics?: boolean;
  /** Extra broker settings, applied last (e.g. { "message.max.bytes": "65536" }). */
  brokerConfig?: Record<string, string>;
  /** Bound on the start, default 120 s. */
  startTimeoutMs?: number;
}

/**
 * Broker heartbeats and the controller's fencing bound: shorter than the defaults (2 s / 9 s) so that a killed
 * broker leaves the ISRs within seconds, long enough that a JVM starved for CPU on a loaded machine is not fenced.
 */
const HEARTBEAT_MS = 1000;
const SESSION_TIMEOUT_MS = 6000;

// ---------------------------------------------------------------------------------------------------------
// Ports

export interface NodePorts {
  plaintext: number;
  ssl: number;
  saslPlaintext: number;
  saslSsl: number;
  /** replication between brokers (plaintext) */
  internal: number;
  /** the KRaft quorum (plaintext) */
  controller: number;
}

const LISTENER_NAMES: Record<keyof NodePorts, string> = {
  plaintext: "PLAINTEXT",
  ssl: "SSL",
  saslPlaintext: "SASL_PLAINTEXT",
  saslSsl: "SASL_SSL",
  internal: "INTERNAL",
  controller: "CONTROLLER",
};

/**
 * `n` distinct free TCP ports on 127.0.0.1, below the kernel's ephemeral range: a stopped broker gets its ports
 * back on restart, and a port of the ephemeral range could meanwhile have become the local end of some client's
 * connection (then the broker would die with "Address already in use"). Each is checked by binding it.
 */
export async function freePorts(n: number): Promise<number[]> {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // not Linux: keep the default
  }
  const low = 10_000;
  const high = Math.max(low + 1000, ephemeralLow) - 1;
  const ports: number[] = [];
  for (let attempts = 0; ports.length < n; attempts++) {
    if (attempts > 100 * n) throw new Error(`freePorts: found only ${ports.length} of ${n} free ports in ${low}..${high}`);
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (!ports.includes(port) && (await canBind(port))) ports.push(port);
  }
  return ports;
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

// ---------------------------------------------------------------------------------------------------------
// TLS

export interface ClusterTls {
  /** PEM of the CA that signed the brokers' certificate. */
  caPath: string;
  ca: string;
  /** PEM of an unrelated CA: a client trusting only it must be refused. */
  wrongCaPath: string;
  wrongCa: string;
  /** The brokers' certificate (CN localhost, SAN DNS:localhost, IP:127.0.0.1). */
  certPath: string;
}

async function openssl(args: string[]): Promise<void> {
  const proc = Bun.spawn(["openssl", ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  track(proc as unknown as Proc);
  const err = new Response(proc.stderr).text();
  const code = await reap(proc as unknown as Proc, 30_000);
  if (code !== 0) throw new Error(`openssl ${args[0]} failed (${code === null ? "no exit within 30 s" : `exit ${code}`}): ${(await err).trim()}`);
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function makeCa(dir: string, name: string, cn: string): Promise<void> {
  const cnf = join(dir, `${name}.cnf`);
  await writeFile(cnf, ["[req]", "distinguished_name = dn", "prompt = no", "x509_extensions = v3_ca", "[dn]", `CN = ${cn}`, "[v3_ca]", "basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign", "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always", ""].join("\n"));
  await openssl(["req", "-x509", ...EC_KEY, "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`), "-days", "3650", "-config", cnf]);
}

/**
 * The cluster's CA, the brokers' certificate and key in one PEM file (Kafka's PEM key store: the unencrypted
 * PKCS#8 key first, then the chain; Kafka 4 needs no ssl.key.password for it), and an unrelated CA. (Were the
 * key encrypted, it would have to be PBE-SHA1-3DES: Kafka looks the cipher up by the name the key gives, and
 * Java 17 has no SecretKeyFactory "PBES2", which openssl's pkcs8 -topk8 makes by default.)
 */
export async function makeTls(dir: string): Promise<ClusterTls & { keystorePath: string }> {
  await mkdir(dir, { recursive: true });
  const p = (name: string) => join(dir, name);
  await Promise.all([makeCa(dir, "ca", "nagare kafka test CA"), makeCa(dir, "wrong-ca", "nagare kafka unrelated CA")]);
  await writeFile(p("server.ext"), ["basicConstraints = CA:FALSE", "keyUsage = critical, digitalSignature, keyEncipherment", "extendedKeyUsage = serverAuth, clientAuth", "subjectAltName = DNS:localhost, IP:127.0.0.1", "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid, issuer", ""].join("\n"));
  await openssl(["req", ...EC_KEY, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost"]);
  await openssl(["x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("server.crt"), "-days", "3650", "-extfile", p("server.ext")]);
  const [ca, wrongCa, cert, key] = await Promise.all([readFile(p("ca.crt"), "utf8"), readFile(p("wrong-ca.crt"), "utf8"), readFile(p("server.crt"), "utf8"), readFile(p("server.key"), "utf8")]);
  await writeFile(p("server.pem"), key + cert + ca);
  return { caPath: p("ca.crt"), ca, wrongCaPath: p("wrong-ca.crt"), wrongCa, certPath: p("server.crt"), keystorePath: p("server.pem") };
}

// ---------------------------------------------------------------------------------------------------------
// server.properties

function jaas(mechanism: SaslMechanism): string {
  if (mechanism === "PLAIN") {
    const u = CLUSTER_USERS.plain;
    return `org.apache.kafka.common.security.plain.PlainLoginModule required user_${u.username}="${u.password}";`;
  }
  // The broker wants a login module per enabled mechanism; the SCRAM credentials come from the metadata log.
  return "org.apache.kafka.common.security.scram.ScramLoginModule required;";
}

/** One node's server.properties. `nodes` gives every node's id and ports (for the quorum). */
export function nodeConfig(
  node: { id: BrokerId; ports: NodePorts; dataDir: string },
  nodes: { id: BrokerId; ports: NodePorts }[],
  tls: { keystorePath: string; caPath: string },
  opts: KafkaClusterOptions,
): string {
  const listeners = (Object.keys(LISTENER_NAMES) as (keyof NodePorts)[]).map((k) => `${LISTENER_NAMES[k]}://127.0.0.1:${node.ports[k]}`);
  const settings: Record<string, string> = {
    "process.roles": "broker,controller",
    "node.id": String(node.id),
    "controller.quorum.voters": nodes.map((n) => `${n.id}@127.0.0.1:${n.ports.controller}`).join(","),
    "controller.listener.names": "CONTROLLER",
    listeners: listeners.join(","),
    "advertised.listeners": listeners.filter((l) => !l.startsWith("CONTROLLER:")).join(","),
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "INTERNAL",
    "log.dirs": node.dataDir,

    "default.replication.factor": "3",
    "num.partitions": "1",
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
    "auto.create.topics.enable": String(opts.autoCreateTopics ?? false),
    "offsets.topic.replication.factor": "3",
    // 50 partitions (the default) take seconds to create on the first consumer group; a handful do.
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "group.initial.rebalance.delay.ms": "0",
    "log.segment.bytes": String(8 * 1024 * 1024),
    // The cleaner (for the compacted __consumer_offsets) allocates this on the heap; the default is 128 MiB.
    "log.cleaner.dedupe.buffer.size": String(16 * 1024 * 1024),
    "broker.heartbeat.interval.ms": String(HEARTBEAT_MS),
    "broker.session.timeout.ms": String(SESSION_TIMEOUT_MS),
    // Two cores: the defaults (3 network, 8 I/O, 10 background threads) only add contention.
    "num.network.threads": "2",
    "num.io.threads": "4",
    "background.threads": "4",

    "ssl.keystore.type": "PEM",
    "ssl.keystore.location": tls.keystorePath,
    "ssl.truststore.type": "PEM",
    "ssl.truststore.location": tls.caPath,
    "ssl.client.auth": "none",

    "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
  };
  for (const listener of ["sasl_plaintext", "sasl_ssl"]) {
    for (const m of ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] as const) {
      settings[`listener.name.${listener}.${m.toLowerCase()}.sasl.jaas.config`] = jaas(m);
    }
  }
  Object.assign(settings, opts.brokerConfig ?? {});
  const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
  return Object.entries(settings).map(([k, v]) => `${k}=${escape(v)}\n`).join("");
}

/** A KRaft cluster id: 16 random bytes, base64url without padding, not starting with "-" (CLIs take that for an option). */
export function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}

/** A Java client's properties (for the Kafka tools' --command-config) that reach `listener` as `user`. */
export function javaClientProperties(listener: ClientListener, caPath: string, mechanism: SaslMechanism | undefined, user: ClusterUser | undefined): string {
  const lines = [`security.protocol=${LISTENER_NAMES[listener]}`];
  if (listener === "ssl" || listener === "saslSsl") lines.push("ssl.truststore.type=PEM", `ssl.truststore.location=${caPath}`);
  if (listener === "saslPlaintext" || listener === "saslSsl") {
    if (mechanism === undefined) throw new Error(`javaClientConfig: listener ${listener} needs a SASL mechanism`);
    const u = user ?? USER_BY_MECHANISM[mechanism];
    const module = mechanism === "PLAIN" ? "org.apache.kafka.common.security.plain.PlainLoginModule" : "org.apache.kafka.common.security.scram.ScramLoginModule";
    lines.push(`sasl.mechanism=${mechanism}`, `sasl.jaas.config=${module} required username="${u.username}" password="${u.password}";`);
  }
  return lines.join("\n") + "\n";
}

/** kcat arguments that reach `listener` on the given brokers as `user`. */
export function kcatClientArgs(brokers: string[], listener: ClientListener, caPath: string, mechanism: SaslMechanism | undefined, user: ClusterUser | undefined): string[] {
  const args = ["-b", brokers.join(","), "-X", `security.protocol=${LISTENER_NAMES[listener].toLowerCase()}`];
  if (listener === "ssl" || listener === "saslSsl") args.push("-X", `ssl.ca.location=${caPath}`);
  if (listener === "saslPlaintext" || listener === "saslSsl") {
    if (mechanism === undefined) throw new Error(`kcatArgs: listener ${listener} needs a SASL mechanism`);
    const u = user ?? USER_BY_MECHANISM[mechanism];
    args.push("-X", `sasl.mechanism=${mechanism}`, "-X", `sasl.username=${u.username}`, "-X", `sasl.password=${u.password}`);
  }
  return args;
}
