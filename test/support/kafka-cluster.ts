/**
 * A real Apache Kafka cluster for tests: three KRaft nodes on 127.0.0.1, one JVM each, every node both broker
 * and controller (node ids 1..3, a static controller quorum of the three). The jars come from
 * test/kafka-cluster/pom.xml (scripts/setup.sh copies them into test/kafka-cluster/lib/); what the nodes are
 * given (ports, TLS files, users, server.properties) is in kafka-cluster-config.ts. Everything a cluster writes
 * (configs, TLS files, log dirs, each node's broker.log) lives in one temporary directory that stop() removes.
 *
 * Facts about the broker (Kafka 4.4.0 on Java 17, this configuration) that users of the helper rely on; the
 * self-test (test/support-kafka-cluster.test.ts) pins the ones about failures:
 *  - Client listeners on every node: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, each on its own port; brokers
 *    replicate over a separate INTERNAL (plaintext) listener, the quorum talks over CONTROLLER. Ports are picked
 *    at start (below the ephemeral range) and kept across broker restarts.
 *  - SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 on both SASL listeners. No authorizer. kcat (librdkafka
 *    before 2.6.1, Debian 12 has 2.0.2) cannot log in with SCRAM to Kafka 4 (it repeats the client nonce; Kafka
 *    4 checks it strictly): check SCRAM with the Java clients (runKafkaTool + javaClientConfig).
 *  - A SIGKILLed node is fenced after broker.session.timeout.ms (6 s here, 6-10 s measured, more if it was the
 *    active controller) and only then leaves the ISRs and loses its leaderships; until then acks=all produces
 *    to partitions it followed wait, and those it led get connection errors. A restarted node is back with full
 *    ISRs 4-10 s after its JVM starts.
 *  - Two nodes down means no quorum: metadata freezes, no ISR shrinks, no leader moves. If they were SIGKILLed,
 *    acks=all on the survivor's partitions fails with REQUEST_TIMED_OUT after the request timeout, yet the
 *    record is in the leader's log and becomes visible once a follower is back (a retry duplicates it). If the
 *    second one was stopped gracefully (controlled shutdown while the quorum still stood), the ISR is the leader
 *    alone and acks=all fails at once with NOT_ENOUGH_REPLICAS.
 *  - `bun test` (1.4.5) never emits process "exit": the JVMs die with the test process through their parent-death
 *    signal (setpriv --pdeathsig), the directory through a janitor process (startJanitor).
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { consumeAll as kcatConsumeAll, KCAT, reap, track, type KafkaMessage, type Proc } from "./kafka.ts";
import {
  BROKER_IDS,
  CLUSTER_USERS,
  SCRAM_FORMAT_ARGS,
  clusterId,
  freePorts,
  javaClientProperties,
  kcatClientArgs,
  makeTls,
  nodeConfig,
  type BrokerId,
  type ClientListener,
  type ClusterTls,
  type ClusterUser,
  type KafkaClusterOptions,
  type NodePorts,
  type SaslMechanism,
} from "./kafka-cluster-config.ts";

export { BROKER_IDS, CLUSTER_USERS, type BrokerId, type ClientListener, type ClusterTls, type ClusterUser, type KafkaClusterOptions, type SaslMechanism };

const KAFKA_CLUSTER_DIR = join(import.meta.dir, "..", "kafka-cluster");
/** Where scripts/setup.sh puts the jars; NAGARE_KAFKA_LIB points elsewhere. */
const KAFKA_LIB_DIR = process.env.NAGARE_KAFKA_LIB ?? join(KAFKA_CLUSTER_DIR, "lib");

/** Bounds. A loaded 2-core machine starts the three JVMs in 10-20 s; the bounds leave room for more. */
const START_TIMEOUT_MS = 120_000;
const RESTART_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 20_000;
const KCAT_TIMEOUT_MS = 20_000;
const TOOL_TIMEOUT_MS = 90_000;
const POLL_MS = 200;

/**
 * JVM flags. The heap is capped at 384 MiB (the default is 1 GiB; RSS settles near 200 MiB per node); SerialGC
 * because two cores cannot feed G1's parallel threads; C1 only (TieredStopAtLevel=1): measured on this 2-core
 * machine it starts the cluster in ~6.5 s instead of ~10 s, and kcat's acks=all produce rate (300k x 100 B
 * into 3 partitions) stayed the same (0.6-1.7 s either way), because C2's compiler threads compete with the
 * brokers for the two cores during a short test. AppCDS was tried too: 0.6 s, not worth an archive to manage.
 * -XX:+ExitOnOutOfMemoryError makes a heap that is too small visible as an exit.
 */
const BROKER_JVM = ["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError", "-XX:-UsePerfData", "-Djava.awt.headless=true", "-Dlog4j2.disable.jmx=true"];
/** NAGARE_KAFKA_JVM_OPTS: more broker JVM flags, appended (e.g. to compare GC settings). */
const EXTRA_JVM = (process.env.NAGARE_KAFKA_JVM_OPTS ?? "").split(/\s+/).filter((f) => f.length > 0);
const TOOL_JVM = ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Djava.awt.headless=true", "-Dlog4j2.disable.jmx=true"];
/** The JVM gets SIGKILL when the test process dies, however it dies (util-linux; without it, exit hooks only). */
const PDEATHSIG = Bun.which("setpriv") ? ["setpriv", "--pdeathsig", "KILL", "--"] : [];

// ---------------------------------------------------------------------------------------------------------
// Public types

export interface PartitionMetadata {
  partition: number;
  /** -1 when the partition has no leader */
  leader: number;
  replicas: number[];
  isr: number[];
  error?: string;
}

export interface TopicMetadata {
  topic: string;
  partitions: PartitionMetadata[];
  error?: string;
}

export interface ClusterMetadata {
  /** The broker that answered. */
  originatingBroker: number;
  controllerId: number;
  /** Registered, unfenced brokers, by id. */
  brokers: { id: number; host: string; port: number }[];
  topics: TopicMetadata[];
}

export interface ClientOptions {
  /** SASL listeners: the mechanism (required) */
  mechanism?: SaslMechanism;
  /** SASL listeners: default the user of the mechanism in `users` */
  user?: ClusterUser;
  /** TLS listeners: the CA to trust, default the cluster's */
  caPath?: string;
}

export interface KafkaCluster {
  /** PLAINTEXT bootstrap: "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3" (node 1 first). */
  bootstrap: string;
  /** "127.0.0.1:port" of each client listener per node; index i is node i+1. */
  listeners: Record<ClientListener, string[]>;
  tls: ClusterTls;
  users: typeof CLUSTER_USERS;
  /** The cluster's temporary directory (configs, TLS files, node-N/data, node-N/broker.log). */
  dir: string;
  /**
   * Creates a topic with kafka-tools' TopicCommand (partitions default 1, replication factor 3) and waits until
   * every running broker's metadata shows every partition with a leader. Throws if the broker refuses it.
   */
  createTopic(name: string, opts?: { partitions?: number; replicationFactor?: number; config?: Record<string, string> }): Promise<void>;
  /** Metadata as one broker sees it (default: any running one); throws after `timeoutMs` (default 20 s). */
  metadata(opts?: { topic?: string; broker?: BrokerId; timeoutMs?: number }): Promise<ClusterMetadata>;
  /**
   * Waits until every running broker lists all running brokers, every partition of every topic has a running
   * leader and every ISR holds all running replicas. Throws after `timeoutMs` (default 90 s) with the last state.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** SIGKILL and reap. No-op if it is not running. */
  killBroker(id: BrokerId): Promise<void>;
  /** SIGTERM (controlled shutdown), SIGKILL after `graceMs` (default 20 s), reap. No-op if it is not running. */
  stopBroker(id: BrokerId, graceMs?: number): Promise<void>;
  /** Starts a stopped or killed node with its data and ports, then waitHealthy (all bounded by `timeoutMs`). */
  startBroker(id: BrokerId, timeoutMs?: number): Promise<void>;
  /** The node's JVM pid while it runs. */
  brokerPid(id: BrokerId): number | undefined;
  /** Ids of the nodes whose JVM runs. */
  runningBrokers(): BrokerId[];
  /** Every message of the topic, read with kcat over PLAINTEXT from the running brokers (consumeAll in kafka.ts). */
  consumeAll(topic: string, opts?: { timeoutMs?: number }): Promise<KafkaMessage[]>;
  /** kcat arguments (`-b` every node's port of that listener, `-X` security settings) for the listener. */
  kcatArgs(listener: ClientListener, opts?: ClientOptions): string[];
  /** Writes a Java client properties file (the Kafka tools' --command-config) for the listener; returns its path. */
  javaClientConfig(listener: ClientListener, opts?: ClientOptions): string;
  /** The end of the node's broker.log (log4j output and the JVM's stdout/stderr), at most maxBytes (64 KiB). */
  logTail(id: BrokerId, maxBytes?: number): string;
  /** Stops every JVM (SIGTERM, SIGKILL after 20 s), reaps them, removes dir. Idempotent; never throws. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// Processes

export interface CommandResult {
  /** null: killed at the bound */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, killed after timeoutMs (default 20 s); tracked and reaped. */
async function runCommand(cmd: string[], opts: { input?: string | Uint8Array; timeoutMs?: number } = {}): Promise<CommandResult> {
  const input = typeof opts.input === "string" ? new TextEncoder().encode(opts.input) : opts.input;
  const proc = Bun.spawn(cmd, { stdin: input ?? "ignore", stdout: "pipe", stderr: "pipe" }) as unknown as Proc;
  track(proc);
  const out = new Response(proc.stdout).text();
  const err = new Response(proc.stderr).text();
  const code = await reap(proc, opts.timeoutMs ?? KCAT_TIMEOUT_MS);
  const [stdout, stderr] = await Promise.all([out, err]);
  return { code, stdout, stderr };
}

/** Runs kcat (see runCommand). */
export function kcat(args: string[], opts: { input?: string | Uint8Array; timeoutMs?: number } = {}): Promise<CommandResult> {
  return runCommand([KCAT, ...args], opts);
}

function javaClasspath(): string {
  const jars = existsSync(KAFKA_LIB_DIR) ? readdirSync(KAFKA_LIB_DIR) : [];
  if (!jars.some((f) => /^kafka_2\.13-.*\.jar$/.test(f))) {
    throw new Error(`no Kafka jars in ${KAFKA_LIB_DIR}: run scripts/setup.sh (it copies test/kafka-cluster/pom.xml's dependencies there with Maven)`);
  }
  return join(KAFKA_LIB_DIR, "*");
}

/**
 * Runs a main class of the Kafka jars (TopicCommand, ConsoleProducer, consumer.ConsoleConsumer, ConfigCommand,
 * ...) in a short-lived JVM (1-2 s); killed after timeoutMs (default 90 s). The tools log warnings to stderr.
 */
export function runKafkaTool(mainClass: string, args: string[], opts: { input?: string | Uint8Array; timeoutMs?: number } = {}): Promise<CommandResult> {
  const log4j = `-Dlog4j2.configurationFile=${join(KAFKA_CLUSTER_DIR, "log4j2-tools.properties")}`;
  return runCommand(["java", ...TOOL_JVM, log4j, "-cp", javaClasspath(), mainClass, ...args], { timeoutMs: TOOL_TIMEOUT_MS, ...opts });
}

/** runKafkaTool that throws unless the tool exits 0. */
async function runTool(mainClass: string, args: string[], what: string): Promise<void> {
  const r = await runKafkaTool(mainClass, args);
  if (r.code !== 0) throw new Error(`${what} failed (${r.code === null ? `no exit within ${TOOL_TIMEOUT_MS} ms` : `exit ${r.code}`}): ${(r.stderr + r.stdout).trim().slice(-4000)}`);
}

/** True if something accepts a TCP connection on 127.0.0.1:port within `ms`. */
function portOpen(port: number, ms = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Polls `cond` until it holds or `ms` passed; returns whether it held. */
async function pollBounded(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() >= deadline) return false;
    await Bun.sleep(50);
  }
  return true;
}

/** The end of a file, at most maxBytes, as text ("" if it does not exist). */
function fileTail(path: string, maxBytes: number): string {
  if (!existsSync(path)) return "";
  const size = statSync(path).size;
  const len = Math.min(size, maxBytes);
  const buf = Buffer.alloc(len);
  const fd = openSync(path, "r");
  try {
    readSync(fd, buf, 0, len, size - len);
  } finally {
    closeSync(fd);
  }
  return buf.toString("utf8");
}

// ---------------------------------------------------------------------------------------------------------
// Metadata (kcat -L -J)

interface KcatMetadata {
  originating_broker: { id: number; name: string };
  controllerid: number;
  brokers: { id: number; name: string }[];
  topics: { topic: string; error?: string; partitions: { partition: number; leader: number; error?: string; replicas: { id: number }[]; isrs: { id: number }[] }[] }[];
}

function parseMetadata(text: string): ClusterMetadata {
  const j = JSON.parse(text) as KcatMetadata;
  return {
    originatingBroker: j.originating_broker.id,
    controllerId: j.controllerid,
    brokers: j.brokers
      .map((b) => {
        const i = b.name.lastIndexOf(":");
        return { id: b.id, host: b.name.slice(0, i), port: Number(b.name.slice(i + 1)) };
      })
      .sort((a, b) => a.id - b.id),
    topics: j.topics.map((t) => ({
      topic: t.topic,
      ...(t.error ? { error: t.error } : {}),
      partitions: t.partitions
        .map((p) => ({ partition: p.partition, leader: p.leader, replicas: p.replicas.map((r) => r.id), isr: p.isrs.map((r) => r.id), ...(p.error ? { error: p.error } : {}) }))
        .sort((a, b) => a.partition - b.partition),
    })),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup when the test process ends without stop()

interface Node {
  id: BrokerId;
  ports: NodePorts;
  dir: string;
  config: string;
  log: string;
  proc: Subprocess | undefined;
}

/** Clusters whose stop() was called. */
const stoppedClusters = new WeakSet<KafkaCluster>();

/** Clusters not yet stopped: the exit hook (which `bun run` emits, `bun test` does not) kills their JVMs. */
const liveClusters = new Set<{ nodes: Node[]; dir: string; keep: boolean }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const c of liveClusters) {
      for (const n of c.nodes) {
        try {
          n.proc?.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
      if (!c.keep) rmSync(c.dir, { recursive: true, force: true });
    }
  });
}

/**
 * A shell that removes `dir` once its stdin reaches EOF: when stop() closes it, or when the test process ends
 * in any way (the kernel closes the pipe even after a SIGKILL). It ignores INT/TERM/HUP so that a Ctrl-C, which
 * reaches the whole process group, does not kill it before it has cleaned up. Not tracked: an exit hook must not
 * kill it. The second rm covers a JVM that was still creating a file while it died. The directory is passed in
 * the environment, so that only the JVMs' command lines name it (the self-test looks for them by it).
 */
function startJanitor(dir: string): Subprocess<"pipe", "ignore", "ignore"> {
  const script = `trap '' INT TERM HUP; cat >/dev/null; rm -rf -- "$NAGARE_KAFKA_DIR" 2>/dev/null || { sleep 1; rm -rf -- "$NAGARE_KAFKA_DIR"; }`;
  return Bun.spawn(["sh", "-c", script, "nagare-kafka-janitor"], {
    stdin: "pipe",
    stdout: "ignore",
    stderr: "ignore",
    env: { ...process.env, NAGARE_KAFKA_DIR: dir },
  });
}

// ---------------------------------------------------------------------------------------------------------
// The cluster

/**
 * Starts a 3-node cluster and returns once every node's ports accept connections and every node's metadata
 * lists all three brokers (bounded by startTimeoutMs, default 120 s; the error carries the end of each node's
 * log, and a node that exits fails the start at once). NAGARE_KAFKA_KEEP=1 keeps the directory after stop().
 */
export async function startKafkaCluster(opts: KafkaClusterOptions = {}): Promise<KafkaCluster> {
  const classpath = javaClasspath();
  const keep = process.env.NAGARE_KAFKA_KEEP === "1";
  const startedAt = performance.now();
  const deadline = startedAt + (opts.startTimeoutMs ?? START_TIMEOUT_MS);
  const dir = await mkdtemp(join(tmpdir(), "nagare-kafka-"));
  const ports = await freePorts(BROKER_IDS.length * 6);
  const nodes: Node[] = BROKER_IDS.map((id, i) => {
    const [plaintext, ssl, saslPlaintext, saslSsl, internal, controller] = ports.slice(i * 6, i * 6 + 6) as [number, number, number, number, number, number];
    const nodeDir = join(dir, `node-${id}`);
    return { id, ports: { plaintext, ssl, saslPlaintext, saslSsl, internal, controller }, dir: nodeDir, config: join(nodeDir, "server.properties"), log: join(nodeDir, "broker.log"), proc: undefined };
  });
  const record = { nodes, dir, keep };
  liveClusters.add(record);
  installExitHook();
  const janitor = keep ? undefined : startJanitor(dir);
  const address = (n: Node, listener: keyof NodePorts = "plaintext") => `127.0.0.1:${n.ports[listener]}`;
  const running = (n: Node): boolean => n.proc !== undefined && n.proc.exitCode === null && n.proc.signalCode === null;
  const up = (): Node[] => nodes.filter(running);
  const node = (id: BrokerId): Node => {
    const n = nodes[id - 1];
    if (n === undefined) throw new Error(`kafka cluster: no broker ${id}`);
    return n;
  };
  const logTail = (id: BrokerId, maxBytes = 64 * 1024): string => fileTail(node(id).log, maxBytes);
  const tails = (): string =>
    nodes.map((n) => `--- node ${n.id} (${running(n) ? `pid ${n.proc?.pid}` : n.proc ? `exited ${n.proc.exitCode ?? n.proc.signalCode}` : "not started"}) ${n.log}:\n${fileTail(n.log, 6000).trimEnd()}`).join("\n");

  const spawnNode = (n: Node): void => {
    const log4j = `-Dlog4j2.configurationFile=${join(KAFKA_CLUSTER_DIR, "log4j2-broker.properties")}`;
    const fd = openSync(n.log, "a");
    try {
      n.proc = Bun.spawn([...PDEATHSIG, "java", ...BROKER_JVM, ...EXTRA_JVM, log4j, "-cp", classpath, "kafka.Kafka", n.config], { stdin: "ignore", stdout: fd, stderr: fd, cwd: n.dir });
    } finally {
      closeSync(fd);
    }
    track(n.proc as unknown as Proc);
  };

  /**
   * Polls `check` until it returns true; throws at `deadlineAt` with `what`, the last reason `check` gave and the
   * broker logs; throws at once when a node in `watch` exits.
   */
  const poll = async (what: string, deadlineAt: number, watch: Node[], check: () => Promise<true | string>): Promise<void> => {
    for (;;) {
      const dead = watch.find((n) => !running(n));
      if (dead) throw new Error(`kafka cluster: node ${dead.id} exited (${dead.proc?.exitCode ?? dead.proc?.signalCode}) while waiting for ${what}\n${tails()}`);
      const r = await check();
      if (r === true) return;
      if (performance.now() >= deadlineAt) throw new Error(`kafka cluster: timed out waiting for ${what} (${r})\n${tails()}`);
      await Bun.sleep(POLL_MS);
    }
  };

  const portsOpen = async (n: Node): Promise<true | string> => {
    for (const [name, port] of Object.entries(n.ports)) {
      if (!(await portOpen(port))) return `node ${n.id}: ${name} port ${port} not open`;
    }
    return true;
  };

  const metadata = async (o: { topic?: string; broker?: BrokerId; timeoutMs?: number } = {}): Promise<ClusterMetadata> => {
    const targets = o.broker !== undefined ? [node(o.broker)] : up();
    if (targets.length === 0) throw new Error("kafka cluster: metadata: no broker is running");
    const ms = o.timeoutMs ?? KCAT_TIMEOUT_MS;
    const args = ["-L", "-J", "-q", "-b", targets.map((n) => address(n)).join(","), "-m", String(Math.max(1, Math.floor(ms / 1000) - 1)), ...(o.topic ? ["-t", o.topic] : [])];
    const r = await kcat(args, { timeoutMs: ms });
    if (r.code !== 0) throw new Error(`kcat -L ${o.broker !== undefined ? `(broker ${o.broker}) ` : ""}failed (${r.code === null ? `no exit within ${ms} ms` : `exit ${r.code}`}): ${r.stderr.trim()}`);
    return parseMetadata(r.stdout);
  };

  /** Why the cluster is not healthy as broker `n` sees it, or true. */
  const healthyAt = async (n: Node): Promise<true | string> => {
    let md: ClusterMetadata;
    try {
      md = await metadata({ broker: n.id, timeoutMs: 5000 });
    } catch (e) {
      return (e as Error).message;
    }
    const ids: number[] = up().map((x) => x.id);
    const listed = md.brokers.map((b) => b.id);
    if (ids.some((id) => !listed.includes(id))) return `broker ${n.id} lists brokers [${listed}], running [${ids}]`;
    for (const t of md.topics) {
      if (t.error) return `broker ${n.id}: topic ${t.topic}: ${t.error}`;
      for (const p of t.partitions) {
        if (!ids.includes(p.leader)) return `broker ${n.id}: ${t.topic}[${p.partition}] leader ${p.leader}`;
        if (p.replicas.some((r) => ids.includes(r) && !p.isr.includes(r))) return `broker ${n.id}: ${t.topic}[${p.partition}] replicas [${p.replicas}] isr [${p.isr}]`;
      }
    }
    return true;
  };

  const healthy = async (): Promise<true | string> => {
    const nodesUp = up();
    if (nodesUp.length === 0) return "no broker is running";
    const results = await Promise.all(nodesUp.map(healthyAt));
    return results.find((r) => r !== true) ?? true;
  };

  const waitHealthy = (timeoutMs = RESTART_TIMEOUT_MS): Promise<void> => poll("a healthy cluster", performance.now() + timeoutMs, up(), healthy);

  const stopNode = async (n: Node, signal: "SIGTERM" | "SIGKILL", graceMs: number): Promise<void> => {
    if (n.proc === undefined) return;
    if (running(n)) n.proc.kill(signal);
    await reap(n.proc as unknown as Proc, graceMs);
  };

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      try {
        const nodesUp = up();
        for (const n of nodesUp) n.proc?.kill("SIGTERM");
        // The last node standing is the quorum leader, which waits 5 s to hand leadership to a voter that is
        // gone; its data is about to be removed, so it is killed as soon as it is alone.
        const last = (async () => {
          await pollBounded(() => up().length <= 1, STOP_GRACE_MS);
          for (const n of up()) n.proc?.kill("SIGKILL");
        })();
        await Promise.all([last, ...nodesUp.map((n) => reap(n.proc as unknown as Proc, STOP_GRACE_MS))]);
      } finally {
        liveClusters.delete(record);
        if (!keep) rmSync(dir, { recursive: true, force: true });
        if (janitor) {
          janitor.stdin.end();
          await reap(janitor as unknown as Proc, 5000);
        }
      }
    })().catch(() => undefined));

  try {
    const tls = await makeTls(join(dir, "tls"));
    for (const n of nodes) {
      mkdirSync(join(n.dir, "data"), { recursive: true });
      writeFileSync(n.config, nodeConfig({ ...n, dataDir: join(n.dir, "data") }, nodes, tls, opts));
    }
    const id = clusterId();
    await Promise.all(nodes.map((n) => runTool("kafka.tools.StorageTool", ["format", "-t", id, "-c", n.config, ...SCRAM_FORMAT_ARGS], `formatting node ${n.id} (kafka.tools.StorageTool format)`)));
    for (const n of nodes) spawnNode(n);
    await poll("every node's ports to open", deadline, nodes, async () => {
      for (const n of nodes) {
        const r = await portsOpen(n);
        if (r !== true) return r;
      }
      return true;
    });
    await poll("all 3 brokers in every node's metadata", deadline, nodes, healthy);

    const listeners: Record<ClientListener, string[]> = {
      plaintext: nodes.map((n) => address(n)),
      ssl: nodes.map((n) => address(n, "ssl")),
      saslPlaintext: nodes.map((n) => address(n, "saslPlaintext")),
      saslSsl: nodes.map((n) => address(n, "saslSsl")),
    };
    const { keystorePath: _, ...publicTls } = tls;
    let clientConfigs = 0;

    const cluster: KafkaCluster = {
      bootstrap: listeners.plaintext.join(","),
      listeners,
      tls: publicTls,
      users: CLUSTER_USERS,
      dir,

      async createTopic(name, o = {}) {
        if (stopped) throw new Error("kafka cluster: createTopic after stop()");
        const partitions = o.partitions ?? 1;
        const nodesUp = up();
        const args = ["--bootstrap-server", nodesUp.map((n) => address(n)).join(","), "--create", "--topic", name, "--partitions", String(partitions), "--replication-factor", String(o.replicationFactor ?? 3)];
        for (const [k, v] of Object.entries(o.config ?? {})) args.push("--config", `${k}=${v}`);
        await runTool("org.apache.kafka.tools.TopicCommand", args, `creating topic ${name}`);
        // Every running broker must know the topic: a client may ask any of them.
        await poll(`topic ${name} with a leader for each of its ${partitions} partitions on every running broker`, performance.now() + 2 * KCAT_TIMEOUT_MS, nodesUp, async () => {
          for (const n of nodesUp) {
            let t: TopicMetadata | undefined;
            try {
              t = (await metadata({ broker: n.id, topic: name, timeoutMs: 5000 })).topics.find((x) => x.topic === name);
            } catch (e) {
              return (e as Error).message;
            }
            if (!t || t.error) return `broker ${n.id}: ${t?.error ?? "topic not listed"}`;
            if (t.partitions.length !== partitions) return `broker ${n.id}: ${t.partitions.length} partitions`;
            const leaderless = t.partitions.find((p) => p.leader < 0);
            if (leaderless) return `broker ${n.id}: partition ${leaderless.partition} has no leader`;
          }
          return true;
        });
      },

      metadata,
      waitHealthy,

      killBroker: (id) => stopNode(node(id), "SIGKILL", 10_000),
      stopBroker: (id, graceMs = STOP_GRACE_MS) => stopNode(node(id), "SIGTERM", graceMs),

      async startBroker(id, timeoutMs = RESTART_TIMEOUT_MS) {
        if (stopped) throw new Error("kafka cluster: startBroker after stop()");
        const n = node(id);
        if (running(n)) throw new Error(`kafka cluster: broker ${id} is running`);
        const until = performance.now() + timeoutMs;
        spawnNode(n);
        await poll(`broker ${id}'s ports to open`, until, [n], () => portsOpen(n));
        await poll(`broker ${id} back and every ISR full`, until, up(), healthy);
      },

      brokerPid: (id) => (running(node(id)) ? node(id).proc?.pid : undefined),
      runningBrokers: () => up().map((n) => n.id),
      consumeAll: (topic, o = {}) => kcatConsumeAll((up().length > 0 ? up() : nodes).map((n) => address(n)).join(","), topic, o),
      kcatArgs: (listener, o = {}) => kcatClientArgs(listeners[listener], listener, o.caPath ?? tls.caPath, o.mechanism, o.user),

      javaClientConfig(listener, o = {}) {
        const path = join(dir, `client-${++clientConfigs}.properties`);
        writeFileSync(path, javaClientProperties(listener, o.caPath ?? tls.caPath, o.mechanism, o.user));
        return path;
      },

      logTail,
      stop: () => {
        stoppedClusters.add(cluster);
        return stop();
      },
    };
    process.stderr.write(`kafka cluster: 3 nodes up in ${Math.round(performance.now() - startedAt)} ms (${dir})\n`);
    return cluster;
  } catch (e) {
    await stop();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------
// One cluster per test process

let shared: Promise<KafkaCluster> | undefined;

/**
 * The test process's cluster (default options), started on the first call. Later calls start again any node a
 * test left down. Do not stop it in a test file's afterAll (other files of the same `bun test` run use it): it
 * dies with the process. If someone stopped it, the next call starts a new one.
 */
export async function sharedKafkaCluster(): Promise<KafkaCluster> {
  const current = shared;
  if (current !== undefined) {
    const c = await current.catch(() => undefined);
    if ((c === undefined || stoppedClusters.has(c)) && shared === current) shared = undefined;
  }
  const p = (shared ??= startKafkaCluster());
  p.catch(() => {
    if (shared === p) shared = undefined; // a later call tries again
  });
  const c = await p;
  for (const id of BROKER_IDS) if (c.brokerPid(id) === undefined) await c.startBroker(id);
  return c;
}
