/**
 * `nagare validate --connect`: a reachability probe of every destination and network source of a config, each
 * reported on its own line. Kafka brokers get a TCP connection (and the TLS handshake when `tls` is set);
 * forward servers get what the sink does (TCP or TLS, and the shared-key handshake); a journal gateway gets an
 * HTTP request for its newest entry. Every probe is bounded by a timeout. A gateway URL is named in its line with
 * any password redacted.
 */
import { connect as connectTcp } from "node:net";
import { connect as connectTls } from "node:tls";
import type { Config } from "./schema.ts";
import type { TlsConfig } from "./types.ts";
import { tlsClientOptions } from "./tls.ts";
import type { ForwardServerConfig, ForwardSinkConfig } from "../sinks/forward/config.ts";
import { ForwardConnection } from "../sinks/forward/connection.ts";
import { redact } from "../observe/redact.ts";

export interface ProbeResult {
  ok: boolean;
  line: string;
}

export async function probeConfig(config: Config, timeoutMs = 5000): Promise<ProbeResult[]> {
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
  return (await Promise.all(probes)).map((p) => ({ ok: p.ok, line: redact(p.line) }));
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

/** A forward server: TCP, TLS and the shared-key handshake, as the sink itself connects. */
async function probeForward(what: string, server: ForwardServerConfig, sink: ForwardSinkConfig): Promise<ProbeResult> {
  const started = performance.now();
  try {
    const connection = await ForwardConnection.open(server, sink);
    connection.close();
    const steps = [sink.tls ? "TLS" : "TCP", ...(sink.shared_key ? ["handshake"] : [])].join(" + ");
    return { ok: true, line: `${what}: reachable (${steps} in ${Math.round(performance.now() - started)} ms)` };
  } catch (err) {
    return { ok: false, line: `${what}: UNREACHABLE (${(err as Error).message})` };
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
