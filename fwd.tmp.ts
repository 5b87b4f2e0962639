import { startForwardServer } from "./test/support/forward-server.ts";
import { writeFileSync, rmSync } from "node:fs";
const server = await startForwardServer({ countOnly: true, behaviour: { ackDelayMs: Number(process.env.DELAY ?? 200) } });
rmSync("/tmp/fwddata", { recursive: true, force: true });
writeFileSync("/tmp/fwd.yaml", `data_dir: /tmp/fwddata\n${process.env.BUF ? `buffer: { max_bytes: ${process.env.BUF} }\n` : ""}checkpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: .bench/journald-200000-small/journal, start_at: head }\nsinks:\n  fwd: { type: forward, inputs: [journal], servers: [{ host: 127.0.0.1, port: ${server.port} }], tag: "journal.x", require_ack: true ${process.env.EXTRA ?? ""} }\n`);
const p = Bun.spawn(process.env.PROF ? ["node_modules/.bin/bun", "--cpu-prof-md", "--cpu-prof-dir=/tmp/fwdprof", "src/cli.ts", "run", "-c", "/tmp/fwd.yaml"] : ["dist/nagare", "run", "-c", "/tmp/fwd.yaml"], { stderr: "pipe", stdout: "ignore", env: { ...process.env, NAGARE_X: "1" } });
(async () => { for await (const l of p.stderr.pipeThrough(new TextDecoderStream())) for (const x of l.split("\n")) if (/MEM|buffer/.test(x)) console.log(x.slice(0, 160)); })();
const t0 = performance.now();
for (let i = 0; i < Number(process.env.SECS ?? 4) * 10; i++) {
  await Bun.sleep(100);
  const got = server.chunks.reduce((n, c) => n + c.count, 0);
  const acked = server.chunks.filter((c) => c.acked).reduce((n, c) => n + c.count, 0);
  if (process.env.TRACE) console.log(`t=${((performance.now() - t0) / 1000).toFixed(1)} received ${got} acked ${acked} chunks ${server.chunks.length}`);
}
const stat = (await Bun.file(`/proc/${p.pid}/stat`).text()).split(") ")[1]!.split(" ");
console.log(`CPU utime ${Number(stat[11]) / 100}s stime ${Number(stat[12]) / 100}s`);
p.kill("SIGTERM"); await p.exited; await server.stop();
