/**
 * `validate --connect` for a forward server: TCP, TLS and the shared-key handshake, as the sink itself connects.
 * Without a shared key the probe listens briefly for the server's first message: a server that requires the
 * handshake speaks first (HELO), one without it says nothing, so a HELO means this sink would be refused.
 */
import type { ProbeResult } from "../../core/descriptor.ts";
import { NagareError } from "../../core/errors.ts";
import type { ForwardServerConfig, ForwardSinkConfig } from "./config.ts";
import { ForwardConnection, HELO_WAIT_MS, reasonOf } from "./connection.ts";

export async function probeServer(what: string, server: ForwardServerConfig, sink: ForwardSinkConfig): Promise<ProbeResult> {
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
