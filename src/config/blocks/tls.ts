/** TLS client options for node:tls (and the Kafka transport) from a sink's `tls` config: one place reads the PEM files. */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { TlsConfig } from "./types.ts";
import { readProblem } from "./environment.ts";

export interface TlsClientOptions {
  ca: string | undefined;
  cert: string | undefined;
  key: string | undefined;
  rejectUnauthorized: boolean;
  servername: string | undefined;
}

/**
 * Reads the CA, certificate and key files. SNI takes a name, not an address: without `servername`, the host is
 * used only when it is a name (the certificate is still checked against the host either way).
 */
export function tlsClientOptions(tls: TlsConfig, host?: string): TlsClientOptions {
  return {
    ca: tls.ca === undefined ? undefined : readFileSync(tls.ca, "utf8"),
    cert: tls.cert === undefined ? undefined : readFileSync(tls.cert, "utf8"),
    key: tls.key === undefined ? undefined : readFileSync(tls.key, "utf8"),
    rejectUnauthorized: tls.verify,
    servername: tls.servername ?? (host !== undefined && isIP(host) === 0 ? host : undefined),
  };
}

/** The PEM files a `tls` setting names, for a component's environment check: each must be readable. */
export function tlsFileProblems(tls: TlsConfig | undefined, at: string): (string | undefined)[] {
  if (tls === undefined) return [];
  return (["ca", "cert", "key"] as const).map((key) => {
    const file = tls[key];
    return file === undefined ? undefined : readProblem(file, `${at}.tls.${key}`, "cannot read");
  });
}
