/**
 * Benchmark: the 200,000-entry benchmark journal (see journald.ts) shipped by the built binary to the forward
 * test server (in this process, loopback) with require_ack. Prints entries/s (every chunk acknowledged and the
 * position checkpointed), the bytes on the wire and peak RSS.
 *   bash scripts/bench/journald-forward.sh [entries] [--small]   (--small: records of ~300 bytes instead of ~800)
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startForwardServer } from "../../test/support/forward-server.ts";
import { benchJournal, runToCheckpoint } from "./common.ts";

const ENTRIES = Number(process.argv[2] ?? 200_000);
const SMALL = process.argv.includes("--small");
const { work, journal, tail } = await benchJournal(ENTRIES, SMALL);

const runs: { ms: number; hwm: number }[] = [];
let recordBytes = 0;
for (let i = 0; i < 4; i++) {
  const server = await startForwardServer({ countOnly: i > 0 });
  try {
    const data = join(work, "forward-data");
    const config = join(work, "forward.yaml");
    writeFileSync(config, `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  journal: { type: journald, directory: ${journal}, start_at: head }\nsinks:\n  fwd: { type: forward, inputs: [journal], servers: [{ host: 127.0.0.1, port: ${server.port} }], tag: "journal.{{field.SYSLOG_IDENTIFIER}}", require_ack: true }\n`);
    runs.push(await runToCheckpoint(config, data, tail));
    if (i === 0) recordBytes = JSON.stringify(server.events[0]?.record ?? {}).length;
    server.events.length = 0;
    if (i === 0) console.log(`with a server that decodes and checks every event: ${Math.round(ENTRIES / (runs[0]!.ms / 1000))} entries/s`);
  } finally {
    await server.stop();
  }
}
runs.shift(); // the decoding run measured the test server more than the agent
runs.sort((a, b) => a.ms - b.ms);
const best = runs[0]!;
console.log(`nagare journal -> forward (test server counting chunks, require_ack): ${ENTRIES} entries (records of ~${recordBytes} bytes as JSON) in ${best.ms.toFixed(0)} ms = ${Math.round(ENTRIES / (best.ms / 1000))} entries/s, process start included; runs ${runs.map((r) => r.ms.toFixed(0)).join(", ")} ms`);
console.log(`peak RSS (VmHWM): ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB`);
