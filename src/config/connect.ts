/**
 * `nagare validate --connect`: a reachability probe of every destination and network source of a config, each
 * reported on its own line. What a probe does is the component's (its descriptor's `probe`): Kafka brokers get a
 * TCP connection and the TLS handshake, forward servers the connection the sink itself opens, a journal gateway an
 * HTTP request for its newest entry. Every probe is bounded by a timeout. Lines are redacted here, once for all:
 * a gateway URL with a password names it without.
 */
import type { ProbeResult } from "../core/descriptor.ts";
import { redact } from "../observe/redact.ts";
import { sinkDescriptor, sourceDescriptor } from "../registry.ts";
import type { Parts } from "./load.ts";

export type { ProbeResult };

export async function probeConfig(config: Pick<Parts, "sources" | "sinks">, timeoutMs = 5000): Promise<ProbeResult[]> {
  const probes: Promise<ProbeResult[]>[] = [];
  for (const [name, source] of Object.entries(config.sources)) {
    const probe = sourceDescriptor(source.type)?.probe;
    if (probe !== undefined) probes.push(probe(source as never, `sources.${name}`, timeoutMs));
  }
  for (const [name, sink] of Object.entries(config.sinks)) {
    const probe = sinkDescriptor(sink.type)?.probe;
    if (probe !== undefined) probes.push(probe(sink as never, `sinks.${name}`, timeoutMs));
  }
  return (await Promise.all(probes)).flat().map((p) => ({ ...p, line: redact(p.line) }));
}
