/** `validate --connect` for a journald source reading a gateway: an HTTP request for its newest entry. */
import type { ProbeResult } from "../../core/descriptor.ts";

export async function probeGateway(what: string, url: string, timeoutMs: number): Promise<ProbeResult> {
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
