/** `validate --connect` for a kafka sink: a TCP connection to a bootstrap broker, and the TLS handshake when `tls` is set. */
import { connect as connectTcp } from "node:net";
import { connect as connectTls } from "node:tls";
import type { ProbeResult } from "../../core/descriptor.ts";
import { tlsClientOptions } from "../../config/blocks/tls.ts";
import type { TlsConfig } from "../../config/blocks/types.ts";
import { splitHostPort } from "../../core/host-port.ts";

export function probeBroker(what: string, address: string, tls: TlsConfig | undefined, timeoutMs: number): Promise<ProbeResult> {
  const { host, port } = splitHostPort(address);
  return new Promise((resolve) => {
    const started = performance.now();
    const done = (ok: boolean, detail: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, line: `${what}: ${ok ? "reachable" : "UNREACHABLE"} (${detail})` });
    };
    const socket = tls ? connectTls({ host, port, ...tlsClientOptions(tls, host) }) : connectTcp({ host, port });
    const timer = setTimeout(() => done(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    socket.once(tls ? "secureConnect" : "connect", () => done(true, `${tls ? "TLS handshake" : "TCP connect"} in ${Math.round(performance.now() - started)} ms`));
    socket.once("error", (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
  });
}
