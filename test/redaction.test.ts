/**
 * Credentials in URLs never leave the agent: `user:password@` is shown as `user:***@` in the log, in
 * `validate --connect`, in /health and /reload bodies and in metric labels.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ApiServer } from "../src/observe/api.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { redact } from "../src/observe/redact.ts";
import { apiOf, RunningAgent, runCli } from "./support/agent.ts";
import { writeAgentConfig } from "./support/config.ts";
import { tempDir, waitFor } from "./support/util.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const SECRET = "s3cret";

/** A TCP port on 127.0.0.1 where nothing listens (bound once, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("redact", () => {
  test.each([
    ["http://alice:s3cret@127.0.0.1:19531", "http://alice:***@127.0.0.1:19531"],
    ["cannot reach http://alice:s3cret@gw/entries?x=1: refused", "cannot reach http://alice:***@gw/entries?x=1: refused"],
    ["https://a:p@ss@w0rd@host/path", "https://a:***@host/path"],
    ['url "http://bob:pw@h" and "https://carol:pw2@k:1"', 'url "http://bob:***@h" and "https://carol:***@k:1"'],
    ["http://:token@host", "http://:***@host"],
  ])("%s", (input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  test.each([["http://alice@host:80/x"], ["http://host:8080/path@x"], ["user@example.com wrote a:b"], ["no url here"]])("leaves %s alone", (text) => {
    expect(redact(text)).toBe(text);
  });
});

describe("where text leaves the process", () => {
  test("the log redacts the message, string fields, nested values and errors, and keeps the JSON whole", () => {
    const path = join(tmp.path, "log.jsonl");
    const fd = openSync(path, "w");
    const log = new Logger("info", { fd }).child({ component: "gw" });
    log.error(`Source gw cannot reach http://alice:${SECRET}@127.0.0.1:1/entries.`, {
      url: `http://alice:${SECRET}@127.0.0.1:1`,
      nested: { urls: [`https://bob:${SECRET}@h`] },
      cause: new Error(`fetch http://carol:${SECRET}@h failed`),
      quoted: `"http://dave:${SECRET}@h" then "x@y"`,
    });
    closeSync(fd);
    const text = readFileSync(path, "utf8");
    expect(text).not.toContain(SECRET);
    const line = JSON.parse(text);
    expect(line.msg).toBe("Source gw cannot reach http://alice:***@127.0.0.1:1/entries.");
    expect(line.url).toBe("http://alice:***@127.0.0.1:1");
    expect(line.nested.urls).toEqual(["https://bob:***@h"]);
    expect(line.cause).toBe("fetch http://carol:***@h failed");
    expect(line.quoted).toBe('"http://dave:***@h" then "x@y"');
  });

  test("metric label values are redacted", () => {
    const metrics = new Metrics();
    metrics.counter("test_total", "A test counter.", { url: `http://alice:${SECRET}@h:1` }).value = 3;
    const text = metrics.render();
    expect(text).not.toContain(SECRET);
    expect(text).toContain('test_total{url="http://alice:***@h:1"} 3');
  });

  test("/health and /reload bodies are redacted", async () => {
    const log = new Logger("error", { fd: openSync(join(tmp.path, "api.log"), "w") });
    const api = ApiServer.start(
      "127.0.0.1:0",
      {
        metrics: () => "",
        health: () => ({ healthy: false, body: { status: "unhealthy", sinks: [{ sink: "s", reason: `nothing delivered: http://alice:${SECRET}@gw refused` }] } }),
        reload: async () => ({ applied: false, problems: [`cannot reach https://bob:${SECRET}@gw`] }),
      },
      { token: "t0ken", tokenFile: join(tmp.path, "api.token") },
      log,
    )!;
    try {
      const health = await fetch(`http://${api.address}/health`);
      expect(health.status).toBe(503);
      const healthText = await health.text();
      expect(healthText).not.toContain(SECRET);
      expect(JSON.parse(healthText).sinks[0].reason).toBe("nothing delivered: http://alice:***@gw refused");
      const reload = await fetch(`http://${api.address}/reload`, { method: "POST", headers: { authorization: "Bearer t0ken" } });
      expect(reload.status).toBe(422);
      expect(await reload.json()).toEqual({ applied: false, problems: ["cannot reach https://bob:***@gw"] });
    } finally {
      api.stop();
    }
  });

  test("a gateway URL with a password: validate, validate --connect, the running agent's log, /health and /metrics never show it", async () => {
    const dir = join(tmp.path, "agent");
    mkdirSync(dir);
    const port = await closedPort();
    const url = `http://alice:${SECRET}@127.0.0.1:${port}`;
    // The forward sink carries its secrets in their own keys (shared_key, password), never in a URL: they
    // must not show either.
    const config = writeAgentConfig(dir, {
      api: "127.0.0.1:0",
      sources: { gw: { type: "journald", url, connect_timeout: "1s", restart_backoff_max: "200ms" } },
      sinks: {
        out: { type: "file", inputs: ["gw"], path: join(dir, "out.jsonl") },
        fw: { type: "forward", inputs: ["gw"], tag: "t", servers: [{ host: "127.0.0.1", port }], shared_key: `key-${SECRET}`, username: "bob", password: `pw-${SECRET}`, connect_timeout: "1s" },
      },
    });

    const validate = await runCli(["validate", "-c", config]);
    expect(validate.code).toBe(0);
    expect(validate.stdout + validate.stderr).not.toContain(SECRET);

    const connect = await runCli(["validate", "--connect", "-c", config]);
    expect(connect.code).toBe(69); // unreachable: the environment, not the config
    expect(connect.stdout + connect.stderr).not.toContain(SECRET);
    expect(connect.stderr).toContain(`sources.gw: gateway http://alice:***@127.0.0.1:${port} UNREACHABLE`);

    const agent = new RunningAgent(config);
    try {
      const api = await apiOf(agent);
      await waitFor("the gateway failure logged", () => agent.entries().find((e) => e.level === "error" && e.msg.includes("Source gw cannot start reading")));
      const [health, metrics] = await Promise.all([fetch(`${api}/health`).then((r) => r.text()), fetch(`${api}/metrics`).then((r) => r.text())]);
      expect(health).not.toContain(SECRET);
      expect(metrics).not.toContain(SECRET);
      expect(await agent.stop()).toBe(0);
    } finally {
      agent.kill();
    }
    const log = agent.log.join("\n");
    expect(log).not.toContain(SECRET);
    const named = agent.entries().filter((e) => e.msg.includes(`http://alice:***@127.0.0.1:${port}`));
    expect(named.map((e) => e.level)).toContain("error");
  });
});
