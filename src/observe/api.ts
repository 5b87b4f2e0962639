/**
 * The agent's HTTP API: GET /metrics (Prometheus text format), GET /health (200 or 503 with a JSON body saying
 * which source, sink or checkpoint fails and why), POST /reload (same as SIGHUP; 200 when applied, 422 with the
 * problems when not). Error texts in the JSON bodies may name a URL; its credentials are redacted like in the log.
 *
 * Reading is open to whoever can reach the address; changing is not: POST /reload needs the token the agent
 * writes to a 0600 file in data_dir (`Authorization: Bearer …`), so a local user who cannot read that file, or a
 * web page in a browser on the host, cannot make the agent re-read its config. On a loopback address the Host
 * header must name a loopback host too (a DNS-rebinding page sends its own name).
 */
import type { Server } from "bun";
import { timingSafeEqual } from "node:crypto";
import { describeError } from "../core/errors.ts";
import type { Logger } from "./log.ts";
import { redactingReplacer } from "./redact.ts";
import { splitHostPort } from "../core/host-port.ts";

export interface HealthReport {
  healthy: boolean;
  body: unknown;
}

export interface ApiHandlers {
  metrics(): string;
  health(): HealthReport;
  reload(): Promise<{ applied: boolean; problems: string[] }>;
}

/** Who may change the agent over the API: the bearer token, and the file it was written to (for messages). */
export interface ApiAuth {
  token: string;
  tokenFile: string;
}

export class ApiServer {
  private constructor(
    private readonly server: Server<undefined>,
    readonly address: string,
  ) {}

  /** Starts listening; a port in use or a bad address is logged as an ERROR and the agent ships on without API. */
  static start(address: string, handlers: ApiHandlers, auth: ApiAuth, log: Logger): ApiServer | undefined {
    const { host: hostname, port } = splitHostPort(address);
    const loopback = isLoopback(hostname);
    const guard: Guard = { token: Buffer.from(auth.token), tokenFile: auth.tokenFile, loopback };
    try {
      const server = Bun.serve({ hostname, port, fetch: (req) => route(req, handlers, guard, log) });
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      const bound = `${host}:${server.port}`;
      log.info(`The API listens on http://${bound} (GET /metrics, GET /health, POST /reload with the token in ${auth.tokenFile}).`);
      if (!loopback) {
        log.warn(`The API listens on ${bound}, which is not a loopback address: anyone who can reach it can read /metrics and /health (POST /reload still needs the token). Bind it to 127.0.0.1 unless a scraper on another host needs it, and firewall the port.`);
      }
      return new ApiServer(server, bound);
    } catch (err) {
      log.error(`The API cannot listen on ${address}: ${describeError(err)}; records are still shipped, but /metrics and /health are unavailable.`);
      return undefined;
    }
  }

  stop(): void {
    void this.server.stop(true);
  }
}

interface Guard {
  token: Buffer;
  tokenFile: string;
  loopback: boolean;
}

async function route(req: Request, handlers: ApiHandlers, guard: Guard, log: Logger): Promise<Response> {
  const path = new URL(req.url).pathname;
  if (guard.loopback && !isLoopback(hostOf(req.headers.get("host") ?? ""))) {
    return new Response("forbidden: this API answers only requests addressed to a loopback host (localhost, 127.0.0.1, [::1])\n", { status: 403 });
  }
  try {
    if (path === "/metrics" && req.method === "GET") {
      return new Response(handlers.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
    }
    if (path === "/health" && req.method === "GET") {
      const report = handlers.health();
      return json(report.body, report.healthy ? 200 : 503);
    }
    if (path === "/reload" && req.method === "POST") {
      if (!authorized(req, guard.token)) {
        return new Response(`unauthorized: POST /reload needs the header "Authorization: Bearer <token>", with the token from ${guard.tokenFile}\n`, { status: 401, headers: { "www-authenticate": "Bearer" } });
      }
      const result = await handlers.reload();
      return json(result, result.applied ? 200 : 422);
    }
    if (["/metrics", "/health", "/reload"].includes(path)) return new Response("method not allowed\n", { status: 405 });
    return new Response("not found: try /metrics, /health or POST /reload\n", { status: 404 });
  } catch (err) {
    log.limited("error", "api", `The API failed to answer ${req.method} ${path}: ${describeError(err)}.`);
    return new Response("internal error\n", { status: 500 });
  }
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body, redactingReplacer), { status, headers: { "content-type": "application/json;charset=utf-8" } });
}

function authorized(req: Request, token: Buffer): boolean {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "")?.[1];
  if (given === undefined) return false;
  const bytes = Buffer.from(given);
  return bytes.length === token.length && timingSafeEqual(bytes, token);
}

/** The host part of a Host header: `name:port`, `[v6]:port`, or either without the port. */
function hostOf(header: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(header);
  if (v6 !== null) return v6[1]!;
  return header.replace(/:\d*$/, "");
}

function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
