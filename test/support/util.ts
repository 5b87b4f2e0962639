/**
 * General test helpers that know nothing of journals, Kafka or the agent: waiting for a condition, a process's
 * memory, temp dirs. The one wait helper of the suite lives here, so every test polls the same way.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Poll `cond` every `intervalMs` (default 20) until it returns a truthy value (returned) or `timeoutMs` (default
 * 10 s) passes; then throw an Error naming `what` (and the last error cond threw, if any: a throw counts as
 * "not yet", so a cond may read a file that does not exist yet or query a peer that is still starting).
 */
export async function waitFor<T>(
  what: string,
  cond: () => T | Promise<T>,
  timeoutMs = 10_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
      lastErr = undefined;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      const why = lastErr === undefined ? "" : ` (last error: ${String(lastErr)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await Bun.sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/** VmHWM (peak RSS) and VmRSS of a live process, in bytes, from /proc/PID/status. */
export function memoryOf(pid: number): { hwm: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(status);
    if (!m?.[1]) throw new Error(`memoryOf(${pid}): no ${key} in /proc/${pid}/status (exited or zombie?)`);
    return Number(m[1]) * 1024;
  };
  return { hwm: kb("VmHWM"), rss: kb("VmRSS") };
}

/** A fresh directory under os.tmpdir() named nagare-test-XXXXXX; cleanup() removes it recursively. */
export function tempDir(): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), "nagare-test-"));
  return {
    path,
    cleanup() {
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on now and that no `port: 0` bind can be given meanwhile: it is
 * taken below the kernel's ephemeral range (ip_local_port_range), so an agent's API or a test server started
 * later cannot land on it, as a port freed from the ephemeral range may be handed out again at once.
 */
export function idlePort(): number {
  const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
  const top = Math.min(low ?? 32768, 32768) - 1;
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * (top - 20_000));
    try {
      Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
      return port;
    } catch {
      // in use: try another
    }
  }
  throw new Error("no idle port found below the ephemeral range");
}
