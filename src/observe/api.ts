/**
 * The agent's HTTP API: GET /metrics (Prometheus text format), GET /health (200 or 503 with a JSON body saying
 * which source, sink or checkpoint fails and why), POST /reload (same as SIGHUP; 200 when applied, 422 with the problems when not).
 * Error texts in the JSON bodies may name a URL; its credentials are redacted like in the log.
 */
import type { Server } from "bun";
import type { Logger } from "./log.ts";
import { redactingReplacer } from "./redact.ts";

export interface HealthReport {
  healthy: boolean;
  body: unknown;
}

export interface ApiHandlers {
  metrics(): string;
  health(): HealthReport;
  reload(): Promise<{ applied: boolean; problems: string[] }>;
}

export class ApiServer {
  private constructor(
    private readonly server: Server<undefined>,
    readonly address: string,
  ) {}

  /** Starts listening; a port in use or a bad address is logged as an ERROR and the agent ships on without API. */
  static start(address: string, handlers: ApiHandlers, log: Logger): ApiServer | undefined {
    const colon = address.lastIndexOf(":");
    const hostname = address.slice(0, colon).replace(/^\[|\]$/g, "");
    const port = Number(address.slice(colon + 1));
    try {
      const server = Bun.serve({ hostname, port, fetch: (req) => route(req, handlers, log) });
      const bound = `${hostname}:${server.port}`;
      log.info(`The API listens on http://${bound} (GET /metrics, GET /health, POST /reload).`);
      return new ApiServer(server, bound);
    } catch (err) {
      log.error(`The API cannot listen on ${address}: ${(err as Error).message}; records are still shipped, but /metrics and /health are unavailable.`);
      return undefined;
    }
  }

  stop(): void {
    void this.server.stop(true);
  }
}

async function route(req: Request, handlers: ApiHandlers, log: Logger): Promise<Response> {
  const path = new URL(req.url).pathname;
  try {
    if (path === "/metrics" && req.method === "GET") {
      return new Response(handlers.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
    }
    if (path === "/health" && req.method === "GET") {
      const report = handlers.health();
      return json(report.body, report.healthy ? 200 : 503);
    }
    if (path === "/reload" && req.method === "POST") {
      const result = await handlers.reload();
      return json(result, result.applied ? 200 : 422);
    }
    if (["/metrics", "/health", "/reload"].includes(path)) return new Response("method not allowed\n", { status: 405 });
    return new Response("not found: try /metrics, /health or POST /reload\n", { status: 404 });
  } catch (err) {
    log.limited("error", "api", `The API failed to answer ${req.method} ${path}: ${(err as Error).message}.`);
    return new Response("internal error\n", { status: 500 });
  }
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body, redactingReplacer), { status, headers: { "content-type": "application/json;charset=utf-8" } });
}
