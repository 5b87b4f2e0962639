/**
 * Benchmark: 4 containers × 250,000 lines in dockerd's json-file format (every `log` value is 200 bytes: 199
 * printable ASCII characters and the container's "\n"; ~270 bytes per json-file line with envelope and time),
 * shipped by the built binary with a docker source (start_at: head, metadata on) to
 *   1. the file sink: the output must hold exactly one line per log line;
 *   2. the forward test server (in this process, loopback, countOnly) with require_ack: it must count every line.
 * A run is timed from spawn (process start included) until the source's checkpoint shows every container at the
 * end of its current file (`<id>-json.log`: same inode, offset == its size). Prints lines/s, MB/s of json-file
 * bytes read, elapsed ms and peak RSS (VmHWM) of each run, then the best.
 *
 * The container directories are written once with the test writer (ContainerWriter.writeMany, nanosecond times
 * as dockerd writes them, all stdout) and cached under .bench/docker-<lines>[-rotate]/.
 * Default: no rotation, one ~67 MB file per container. With --rotate: dockerd's rotation by rename with
 * max-size=10m (10 MiB) and max-file large enough to keep every line (the source reads each chain from its oldest file).
 *
 *   bash scripts/bench/docker.sh [--lines N] [--runs N] [--rotate] [--only file|forward]
 *     --lines N   lines in all (split evenly over the 4 containers; default 1,000,000)
 *     --runs N    runs per sink (default 3)
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { countLines } from "../../test/support/agent.ts";
import { ContainerWriter } from "../../test/support/docker-writer.ts";
import { startForwardServer } from "../../test/support/forward-server.ts";
import { ROOT, runUntilCheckpoint } from "./common.ts";

const CONTAINERS = 4;
const LOG_BYTES = 200; // the `log` value, its "\n" included
const ROTATE_MAX_SIZE = 10 * 1024 * 1024; // --log-opt max-size=10m (dockerd parses it with units.RAMInBytes: MiB)
const FILE_TARGET = 200_000; // lines/s to the file sink, 1,000,000 lines

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}
const LINES = Number(option("--lines") ?? 1_000_000);
const RUNS = Number(option("--runs") ?? 3);
const ROTATE = process.argv.includes("--rotate");
const ONLY = option("--only");
if (!Number.isInteger(LINES) || LINES < CONTAINERS || LINES % CONTAINERS !== 0) throw new Error(`--lines must be a positive multiple of ${CONTAINERS}`);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error("--runs must be a positive integer");
if (ONLY !== undefined && ONLY !== "file" && ONLY !== "forward") throw new Error("--only takes file or forward");
const PER_CONTAINER = LINES / CONTAINERS;

interface Container {
  id: string;
  /** `<id>-json.log`: the file the checkpoint must reach the end of. */
  path: string;
  size: number;
  ino: number;
}

/** 199 printable ASCII characters (nothing dockerd escapes), varied like an access log. */
function logText(c: number, i: number): string {
  const t = new Date(1_700_000_000_000 + i * 3).toISOString();
  const base =
    `${t} INFO [svc-${c}] request_id=${(i * 2654435761) % 4294967296} method=${i % 7 === 0 ? "POST" : "GET"} ` +
    `path=/api/v1/items/${i}?page=${i % 50} status=${i % 23 === 0 ? 503 : 200} bytes=${(i * 37) % 65536} dur_ms=${i % 997} `;
  return base.padEnd(LOG_BYTES - 1, "abcdefghijklmnopqrstuvwxyz0123456789").slice(0, LOG_BYTES - 1);
}

/** The cached container directories (written once) and each container's current file. */
function benchContainers(): { work: string; root: string; containers: Container[] } {
  const work = join(ROOT, ".bench", `docker-${LINES}${ROTATE ? "-rotate" : ""}`);
  const root = join(work, "containers");
  const ids = Array.from({ length: CONTAINERS }, (_, c) => createHash("sha256").update(`nagare-bench-container-${c}`).digest("hex"));
  if (!existsSync(join(work, "ready"))) {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    const started = performance.now();
    // ~270 bytes per entry: the files needed at max-size each, plus room to spare.
    const maxFiles = Math.ceil((PER_CONTAINER * 270) / ROTATE_MAX_SIZE) + 2;
    for (let c = 0; c < CONTAINERS; c++) {
      const w = new ContainerWriter({
        root,
        id: ids[c],
        name: `bench-app-${c}`,
        image: "registry.example.com/team/app:1.42.0",
        labels: { "com.docker.compose.project": "bench", "com.docker.compose.service": `app-${c}`, team: "platform" },
        ...(ROTATE ? { maxSize: ROTATE_MAX_SIZE, maxFiles } : {}),
      });
      for (let from = 0; from < PER_CONTAINER; from += 10_000) {
        const lines: string[] = [];
        for (let i = from; i < Math.min(from + 10_000, PER_CONTAINER); i++) lines.push(logText(c, i));
        w.writeMany(lines);
      }
      w.close();
      if (ROTATE && w.rotations >= maxFiles) throw new Error(`rotated ${w.rotations} times with max-file ${maxFiles}: lines were dropped`);
    }
    writeFileSync(join(work, "ready"), "");
    console.log(`wrote ${CONTAINERS} containers × ${PER_CONTAINER} lines under ${root} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  const containers = ids.map((id) => {
    const path = join(root, id, `${id}-json.log`);
    const st = statSync(path);
    return { id, path, size: st.size, ino: st.ino };
  });
  return { work, root, containers };
}

/** Sum of the sizes of every json-file log file (rotated ones included). */
function logBytes(root: string, containers: Container[]): number {
  let total = 0;
  for (const c of containers) {
    for (const name of new Bun.Glob(`${c.id}-json.log*`).scanSync({ cwd: join(root, c.id) })) total += statSync(join(root, c.id, name)).size;
  }
  return total;
}

/** Every container's checkpoint is at the end of its current file. */
function atEnd(containers: Container[]): (position: unknown) => boolean {
  return (position) => {
    const saved = (position as { containers?: Record<string, { identity: { ino: number }; offset: number }> }).containers ?? {};
    return containers.every((c) => saved[c.id]?.offset === c.size && saved[c.id]?.identity.ino === c.ino);
  };
}

interface Run {
  ms: number;
  hwm: number;
}

const { work, root, containers } = benchContainers();
const bytes = logBytes(root, containers);
const files = containers.reduce((n, c) => n + [...new Bun.Glob(`${c.id}-json.log*`).scanSync({ cwd: join(root, c.id) })].length, 0);
console.log(
  `${CONTAINERS} containers × ${PER_CONTAINER} lines (log values of ${LOG_BYTES} bytes), ${(bytes / 1e6).toFixed(1)} MB of json-file in ${files} files ` +
    `(${(bytes / LINES).toFixed(0)} bytes/line, ${ROTATE ? `rotated at max-size 10m` : "no rotation"})`,
);
const include = join(root, "*", "*-json.log");
const data = join(work, "data");
const log = join(work, "agent.log");

function describe(r: Run): string {
  return `${Math.round(LINES / (r.ms / 1000)).toLocaleString("en")} lines/s, ${(bytes / 1e6 / (r.ms / 1000)).toFixed(1)} MB/s, ${r.ms.toFixed(0)} ms, peak RSS ${(r.hwm / 1048576).toFixed(1)} MiB`;
}

function summary(label: string, runs: Run[]): Run {
  const best = [...runs].sort((a, b) => a.ms - b.ms)[0]!;
  console.log(`${label}: best ${describe(best)}; peak RSS of all runs ${(Math.max(...runs.map((r) => r.hwm)) / 1048576).toFixed(1)} MiB`);
  return best;
}

// A short checkpoint interval only makes the end of the run visible sooner; it does not speed up delivery.
const common = `data_dir: ${data}\ncheckpoint_interval: 50ms\napi: false\nsources:\n  containers: { type: docker, include: ["${include}"], start_at: head }\n`;

if (ONLY !== "forward") {
  const out = join(work, "out.jsonl");
  const config = join(work, "file.yaml");
  writeFileSync(config, `${common}sinks:\n  out: { type: file, inputs: [containers], path: ${out} }\n`);
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    rmSync(out, { force: true });
    const r = await runUntilCheckpoint(config, data, "containers", atEnd(containers), log);
    const lines = countLines(out);
    if (lines !== LINES) throw new Error(`file sink run ${i + 1}: the output holds ${lines} lines, expected ${LINES}`);
    runs.push(r);
    console.log(`docker -> file, run ${i + 1}: ${describe(r)} (output ${(statSync(out).size / 1e6).toFixed(0)} MB, ${lines} lines)`);
  }
  rmSync(out, { force: true });
  const best = summary("docker -> file", runs);
  const rate = LINES / (best.ms / 1000);
  // The target is for the full run: in a short one the agent's start (~0.35 s) dominates.
  if (LINES >= 1_000_000) console.log(`file sink target ${FILE_TARGET.toLocaleString("en")} lines/s: ${rate >= FILE_TARGET ? "met" : "MISSED"} (${((100 * rate) / FILE_TARGET).toFixed(0)}%)`);
}

if (ONLY !== "file") {
  const config = join(work, "forward.yaml");
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    const server = await startForwardServer({ countOnly: true });
    try {
      writeFileSync(
        config,
        `${common}sinks:\n  fwd: { type: forward, inputs: [containers], servers: [{ host: 127.0.0.1, port: ${server.port} }], tag: "docker.{{field.container_name}}", require_ack: true }\n`,
      );
      const r = await runUntilCheckpoint(config, data, "containers", atEnd(containers), log);
      const unique = new Map(server.chunks.map((c) => [c.id, c.count]));
      const counted = [...unique.values()].reduce((a, b) => a + b, 0);
      const resent = server.chunks.length - unique.size;
      if (server.protocolErrors.length > 0) throw new Error(`forward run ${i + 1}: protocol errors: ${server.protocolErrors.join("; ")}`);
      if (counted !== LINES) throw new Error(`forward run ${i + 1}: the server counted ${counted} events in ${unique.size} chunks, expected ${LINES}`);
      runs.push(r);
      console.log(`docker -> forward, run ${i + 1}: ${describe(r)} (${unique.size} chunks${resent > 0 ? `, ${resent} resent` : ""}, ${counted} events)`);
    } finally {
      await server.stop();
    }
  }
  summary("docker -> forward (countOnly server, require_ack)", runs);
}
