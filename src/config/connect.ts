/**
 * `nagare validate --connect`: a reachability probe of every destination and network source of a config, each
 * reported on its own line. Kafka brokers get a TCP connection (and the TLS handshake when `tls` is set);
 * forward servers get what the sink does (TCP or TLS, and the shared-key handshake, or without a shared key a
 * short listen for a HELO that would mean the server requires one); a journal gateway gets an
 * HTTP request for its newest entry. Every probe is bounded by a timeout. A gateway URL is named in its line with
 * any password redacted.
 */
import { connect as connectTcp } from "node:net";
import { connect as connectTls } from "node:tls";
import type { Config } from "./schema.ts";
import type { TlsConfig } from "./types.ts";
import { tlsClientOptions } from "./tls.ts";
import type { ForwardServerConfig, ForwardSinkConfig } from "../sinks/forward/config.ts";
import { ForwardConnection, HELO_WAIT_MS, reasonOf } from "../sinks/forward/connection.ts";
import { NagareError } from "../core/errors.ts";
import { redact } from "../observe/redact.ts";

export interface ProbeResult {
  ok: boolean;
  /** The destination answered but refuses this config (a forward server that requires a shared_key): a config problem. */
  refused?: boolean;
  line: string;
}

export async function probeConfig(config: Pick<Config, "sources" | "sinks">, timeoutMs = 5000): Promise<ProbeResult[]> {
  const probes: Promise<ProbeResult>[] = [];
  for (const [name, source] of Object.entries(config.sources)) {
    if (source.type === "journald" && source.url !== undefined) probes.push(probeGateway(`sources.${name}`, source.url, timeoutMs));
  }
  for (const [name, sink] of Object.entries(config.sinks)) {
    if (sink.type === "kafka") {
      for (const broker of sink.brokers) probes.push(probeTcp(`sinks.${name}: broker ${broker}`, broker, sink.tls, timeoutMs));
    }
    if (sink.type === "forward") {
      for (const server of sink.servers) probes.push(probeForward(`sinks.${name}: server ${server.host}:${server.port}`, server, { ...sink, connect_timeout: Math.min(sink.connect_timeout, timeoutMs) }));
    }
  }
  return (await Promise.all(probes)).map((p) => ({ ...p, line: redact(p.line) }));
}

function probeTcp(what: string, address: string, tls: TlsConfig | undefined, timeoutMs: number): Promise<ProbeResult> {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(colon + 1));
  return new Promise((resolve) => {
    const started = performance.now();
    const done = (ok: boolean, detail: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, line: `${what}: ${ok ? "reachable" : "UNREACHABLE"} (${detail})` });
    };
    const socket = tls
      ? connectTls({ host, port, ...tlsClientOptions(tls, host) })
      : connectTcp({ host, port });
    const timer = setTimeout(() => done(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    socket.once(tls ? "secureConnect" : "connect", () => done(true, `${tls ? "TLS handshake" : "TCP connect"} in ${Math.round(performance.now() - started)} ms`));
    socket.once("error", (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
  });
}

/**
 * A forward server: TCP, TLS and the shared-key handshake, as the sink itself connects. Without a shared key the
 * probe listens briefly for the server's first message: a server that requires the handshake speaks first
 * (HELO), one without it says nothing, so a HELO means this sink would be refused.
 */
async function probeForward(what: string, server: ForwardServerConfig, sink: ForwardSinkConfig): Promise<ProbeResult> {
  const started = performance.now();
  try {
    const connection = await ForwardConnection.open(server, sink, HELO_WAIT_MS);
    const ms = Math.round(performance.now() - started);
    await connection.close();
    const transport = sink.tls ? "TLS" : "TCP";
    const detail = sink.shared_key ? `${transport} + handshake in ${ms} ms` : `${transport}; it asked for no handshake within ${HELO_WAIT_MS} ms`;
    return { ok: true, line: `${what}: reachable (${detail})` };
  } catch (err) {
    const reason = reasonOf(err, `${server.host}:${server.port}`);
    const refused = err instanceof NagareError && err.code === "CONFIG_INVALID";
    return { ok: false, refused, line: `${what}: ${refused ? "REFUSED" : "UNREACHABLE"} (${reason})` };
  }
}

async function probeGateway(what: string, url: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const response = await fetch(`${url.replace(/\/+$/, "")}/entries`, {
      headers: { Accept: "application/vnd.fdo.journal", Range: "entries=:-1:1" },
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel();
    return { ok: response.ok, line: `${what}: gateway ${url} ${response.ok ? "reachable" : "UNREACHABLE"} (HTTP ${response.status})` };
  } catch (err) {
    return { ok: false, line: `${what}: gateway ${url} UNREACHABLE (${(err as Error).message})` };
  }
}
