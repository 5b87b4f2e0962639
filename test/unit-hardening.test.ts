/**
 * The systemd unit install.sh writes, held to what systemd measures and to what the agent really does. No
 * systemd runs here as PID 1 to start the unit, so its sandbox is checked piece by piece:
 *   - `systemd-analyze security --offline=yes` rates the exposure of both variants (plain, and a Docker host's
 *     with CAP_DAC_READ_SEARCH) at most 2.5, and `systemd-analyze verify` has nothing to say about them;
 *   - the compiled binary runs realistic work under `strace -f` — journalctl as its child, docker logs with a
 *     rotation, a forward sink over TLS to "localhost" (a name to resolve), the file sink, the HTTP API, a SIGHUP
 *     reload sent by the unit's ExecReload= command, a graceful stop, and ExecStartPre='s validate — and every
 *     system call that it, journalctl and /bin/kill made is one the unit's SystemCallFilter= allows (expanded by
 *     `systemd-analyze syscall-filter`), of the native architecture only (SystemCallArchitectures=native);
 *   - that run happens under the parts of the sandbox that can be rebuilt without systemd, and still ships
 *     every record: /proc mounted as ProtectProc=invisible + ProcSubset=pid mount it, and a seccomp filter
 *     (compiled here) that refuses socket() for every family outside RestrictAddressFamilies= with
 *     EAFNOSUPPORT, fails clone3() with ENOSYS (RestrictNamespaces=) and kills a non-native system call, as
 *     systemd's filters do.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { apiOf, metricValue, readJsonLines, ROOT, RunningAgent } from "./support/agent.ts";
import { writeAgentConfig } from "./support/config.ts";
import { ContainerWriter } from "./support/docker-writer.ts";
import { makeTestCertificates, startForwardServer, type ForwardServer } from "./support/forward-server.ts";
import { writeOsTree } from "./support/os-tree.ts";

const tmp = tempDir();
const binary = join(tmp.path, "nagare");
const seccomp = join(tmp.path, "unit-seccomp");
const units: Record<"plain" | "docker", string> = { plain: "", docker: "" };

async function sh(args: string[], timeoutMs = 120_000): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(args, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, out, err };
}

/** A target tree with the account files of a minimal Debian system; `docker` adds dockerd's log directory. */
async function installInto(name: string, docker: boolean): Promise<string> {
  const root = writeOsTree(join(tmp.path, name));
  if (docker) mkdirSync(join(root, "var/lib/docker/containers"), { recursive: true });
  const r = await sh(["sh", "install.sh", "--root", root, "--binary", binary]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  return readFileSync(join(root, "etc/systemd/system/nagare.service"), "utf8");
}

/*
 * The seccomp rules of the unit that change what a run does, as systemd enforces them: RestrictAddressFamilies=
 * (socket() with another family fails with EAFNOSUPPORT), SystemCallArchitectures=native (a system call of
 * another ABI, or x32's, kills the process) and RestrictNamespaces= (systemd cannot see clone3()'s flags, so it
 * fails clone3() with ENOSYS and glibc falls back to clone()).
 */
const UNIT_SECCOMP_C = String.raw`
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__)
#define NATIVE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE AUDIT_ARCH_AARCH64
#endif
#define STMT(code, k) (struct sock_filter)BPF_STMT(code, k)
#define JUMP(code, k, jt, jf) (struct sock_filter)BPF_JUMP(code, k, jt, jf)
int main(int argc, char **argv) {
  struct sock_filter f[64];
  int n = 0, i = 1, fams[16], nf = 0;
  for (; i < argc && strcmp(argv[i], "--") != 0 && nf < 16; i++) fams[nf++] = atoi(argv[i]);
  if (i >= argc - 1) { fprintf(stderr, "usage: unit-seccomp FAMILY... -- COMMAND...\n"); return 64; }
  f[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE, 1, 0);
  f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  f[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
  f[n++] = JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
  f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
  f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
  f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
  f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, nf + 2);
  f[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
  for (int k = 0; k < nf; k++) f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, fams[k], nf - k, 0);
  f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT);
  f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog prog = { .len = (unsigned short)n, .filter = f };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) { perror("seccomp"); return 71; }
  execvp(argv[i + 1], argv + i + 1);
  perror(argv[i + 1]);
  return 127;
}
`;

const FAMILIES: Record<string, number> = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, AF_NETLINK: 16, AF_PACKET: 17 };

beforeAll(async () => {
  // Built straight into the temp dir (`binary`), leaving dist/ alone.
  const build = await sh(["bash", "scripts/build.sh", tmp.path], 300_000);
  expect(build.code).toBe(0);
  writeFileSync(`${seccomp}.c`, UNIT_SECCOMP_C);
  const cc = await sh(["gcc", "-O2", "-Wall", "-Werror", "-o", seccomp, `${seccomp}.c`]);
  expect(cc.err).toBe("");
  expect(cc.code).toBe(0);
  units.plain = await installInto("plain", false);
  units.docker = await installInto("docker", true);
}, 400_000);

afterAll(() => tmp.cleanup());

/** Values of a unit directive, in order (a directive may repeat). */
function directive(unit: string, key: string): string[] {
  return unit.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

const setCache = new Map<string, string[]>();

/** The system calls of a set, nested sets expanded, as `systemd-analyze syscall-filter` lists them. */
async function expandSet(name: string): Promise<string[]> {
  const cached = setCache.get(name);
  if (cached) return cached;
  const r = await sh(["systemd-analyze", "syscall-filter", "--no-pager", name]);
  expect(r.code).toBe(0);
  const out: string[] = [];
  for (const line of r.out.split("\n").slice(1)) {
    const item = line.trim();
    if (item === "" || item.startsWith("#")) continue;
    out.push(...(item.startsWith("@") ? await expandSet(item) : [item]));
  }
  setCache.set(name, out);
  return out;
}

/**
 * What the unit's SystemCallFilter= lines allow, read as systemd does: the first line decides between an allow
 * list and a deny list; later lines add to or take from it; an empty assignment resets.
 */
async function allowedSyscalls(unit: string): Promise<(name: string) => boolean> {
  let mode: "allow" | "deny" | undefined;
  const set = new Set<string>();
  for (const value of directive(unit, "SystemCallFilter")) {
    if (value === "") {
      mode = undefined;
      set.clear();
      continue;
    }
    const negated = value.startsWith("~");
    mode ??= negated ? "deny" : "allow";
    const names = (await Promise.all(value.replace(/^~/, "").split(/\s+/).filter(Boolean).map((t) => (t.startsWith("@") ? expandSet(t) : [t])))).flat();
    const adds = (mode === "allow") !== negated;
    for (const n of names) {
      if (adds) set.add(n);
      else set.delete(n);
    }
  }
  if (mode === undefined) throw new Error("the unit sets no SystemCallFilter=");
  return mode === "allow" ? (n) => set.has(n) : (n) => !set.has(n);
}

interface Trace {
  syscalls: Set<string>;
  /** socket() calls: family and whether the filter refused it. */
  sockets: { family: string; refused: boolean }[];
  /** mmap/mprotect calls asking for memory both writable and executable. */
  writableExecutable: number;
  /** Lines that are neither a system call, a signal nor an exit: a personality change, anything unexpected. */
  other: string[];
}

/**
 * Parses `strace -f -o FILE` output (one line per call, "PID name(...", "PID <... name resumed>") from the
 * execve of `program` on: what ran before it (setpriv, a wrapper of the test) is not under the unit.
 */
function parseTrace(text: string, program: string): Trace {
  const trace: Trace = { syscalls: new Set(), sockets: [], writableExecutable: 0, other: [] };
  const pending = new Map<string, string>();
  const start = text.indexOf(`execve("${program}", `);
  if (start < 0) throw new Error(`the trace has no execve of ${program}`);
  for (const line of text.slice(text.lastIndexOf("\n", start) + 1).split("\n")) {
    if (line === "") continue;
    const call = /^(\d+) +(?:<\.\.\. (\w+) resumed>|(\w+)\()/.exec(line);
    if (call === null) {
      if (!/^\d+ +(---|\+\+\+) /.test(line)) trace.other.push(line);
      continue;
    }
    const [, pid, resumed, started] = call;
    const name = (resumed ?? started)!;
    trace.syscalls.add(name);
    if (/\b(mmap|mprotect)\(.*PROT_WRITE\|PROT_EXEC/.test(line)) trace.writableExecutable++;
    if (name !== "socket") continue;
    // A socket() call may be split in two lines: its family on the first, its result on the second.
    const family = started ? /^\d+ +socket\((\w+)/.exec(line)![1]! : pending.get(pid!)!;
    if (line.includes("<unfinished ...>")) {
      pending.set(pid!, family);
      continue;
    }
    trace.sockets.push({ family, refused: line.includes("= -1 EAFNOSUPPORT") });
  }
  return trace;
}

/** The ELF machine of a program: "x86-64", "aarch64" or a number. */
function elfMachine(path: string): string {
  const fd = openSync(path, "r");
  const head = Buffer.alloc(20);
  readSync(fd, head, 0, 20, 0);
  closeSync(fd);
  expect(head.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
  expect(head[4]).toBe(2); // ELFCLASS64: no 32-bit program runs under the unit
  const machine = head.readUInt16LE(18);
  return machine === 62 ? "x86-64" : machine === 183 ? "aarch64" : String(machine);
}

/** The pid of the child of `parent` that runs `program` (the agent under strace), found through /proc. */
function childRunning(parent: number, program: string): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === parent && readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0")[0] === program) return Number(entry);
    } catch {
      // the process ended while /proc was read
    }
  }
  return undefined;
}

/** Records of both sources seen: journal SEQ values and container log lines. */
function seen(records: Record<string, unknown>[]): { seqs: Set<number>; lines: Set<string> } {
  const seqs = new Set<number>();
  const lines = new Set<string>();
  for (const r of records) {
    if (r.SEQ !== undefined) seqs.add(Number(r.SEQ));
    if (typeof r.log === "string") lines.add(r.log);
  }
  return { seqs, lines };
}

/** Every journal SEQ 1..journal and container line 1..lines is among the records. */
function holds(records: Record<string, unknown>[], journal: number, lines: number): boolean {
  const s = seen(records);
  for (let i = 1; i <= journal; i++) if (!s.seqs.has(i)) return false;
  for (let i = 1; i <= lines; i++) if (!s.lines.has(`line ${i}`)) return false;
  return true;
}

const straceTo = (dir: string, name: string) => ["strace", "-f", "-s", "32", "--quiet=attach,exit,path-resolution,thread-execve", "-o", join(dir, `${name}.trace`)];

/**
 * The realistic run, traced into dir/{validate,run,kill}.trace: ExecStartPre's validate; then the agent, under
 * the rebuilt parts of the sandbox, reads a journal through journalctl and a container's log (rotating), ships to
 * the file sink and over TLS to a forward server named "localhost", serves its API, reloads on ExecReload's
 * `/bin/kill -HUP` into a config with one more sink, reads on, and stops on SIGTERM with exit status 0.
 */
async function tracedRun(dir: string, familyNumbers: string[]): Promise<void> {
  const journal = join(dir, "journal");
  await writeJournal(journal, sequenceEntries(1, 5));
  const containers = join(dir, "containers");
  const container = new ContainerWriter({ root: containers, maxSize: 400, maxFiles: 2 });
  for (let i = 1; i <= 5; i++) container.write(`line ${i}`);
  const certs = await makeTestCertificates(tmp.path);
  let server: ForwardServer | undefined;
  let agent: RunningAgent | undefined;
  let pid: number | undefined;
  try {
    server = await startForwardServer({ tls: { cert: certs.cert, key: certs.key } });
    const forward = server;
    const [out, out2] = [join(dir, "out.jsonl"), join(dir, "out2.jsonl")];
    const sources = {
      journal: { type: "journald", directory: journal, start_at: "head" },
      containers: { type: "docker", include: [`${containers}/*/*-json.log`], rescan_interval: "200ms", poll_interval: "50ms" },
    };
    const sinks: Record<string, unknown> = {
      out: { type: "file", inputs: ["journal", "containers"], path: out },
      fwd: { type: "forward", inputs: ["journal", "containers"], servers: [{ host: "localhost", port: forward.port }], tag: "t.{{source}}", tls: { ca: certs.caPath } },
    };
    const config = writeAgentConfig(dir, { sources, sinks, api: "127.0.0.1:0" });
    const validate = await sh([...straceTo(dir, "validate"), binary, "validate", "-c", config]);
    expect({ code: validate.code, err: validate.err }).toEqual({ code: 0, err: "" });

    // /proc as ProtectProc=invisible and ProcSubset=pid leave it (in the same pid namespace: the pids seen here
    // are the test's), then the socket filter, then strace; a tracee outlives a killed strace, so setpriv makes
    // the agent die with it.
    const sandbox = ["unshare", "--mount", "sh", "-c", 'mount -t proc -o subset=pid,hidepid=invisible proc /proc && test ! -e /proc/sys && exec "$@"', "sh"];
    const pdeathsig = ["setpriv", "--pdeathsig", "KILL", "--"];
    const running = new RunningAgent(config, { command: [...sandbox, seccomp, ...familyNumbers, "--", ...straceTo(dir, "run"), ...pdeathsig, binary] });
    agent = running;
    const api = await apiOf(running);
    const agentPid = await waitFor("the agent under strace", () => childRunning(running.pid, binary) ?? 0, 20_000);
    pid = agentPid;
    const delivered = (journal: number, lines: number) => holds(readJsonLines(out), journal, lines) && holds(forward.events.map((e) => e.record), journal, lines);
    await waitFor("5 journal entries and 5 container lines in the file and at the forward server", () => delivered(5, 5), 60_000);
    expect((await fetch(`${api}/health`)).status).toBe(200);

    writeAgentConfig(dir, { sources, sinks: { ...sinks, out2: { type: "file", inputs: ["journal"], path: out2 } }, api: "127.0.0.1:0" });
    const kill = await sh([...straceTo(dir, "kill"), "/bin/kill", "-HUP", String(agentPid)]);
    expect(kill.code).toBe(0);
    await waitFor("the reload applied", async () => metricValue(await (await fetch(`${api}/metrics`)).text(), "nagare_config_reloads_total", "") === 1, 60_000);

    await writeJournal(journal, sequenceEntries(6, 3));
    for (let i = 6; i <= 10; i++) container.write(`line ${i}`);
    await waitFor("8 journal entries and 10 container lines everywhere, 6-8 in the added sink", () => delivered(8, 10) && [6, 7, 8].every((n) => seen(readJsonLines(out2)).seqs.has(n)), 60_000);
    expect(container.rotations).toBeGreaterThan(0);

    process.kill(agentPid, "SIGTERM");
    const code = await running.exited;
    pid = undefined; // reaped: the number may belong to another process now
    expect(code).toBe(0);
    expect(running.entries().filter((e) => e.level === "error")).toEqual([]);
  } finally {
    if (pid !== undefined) process.kill(pid, "SIGKILL");
    agent?.kill("SIGKILL");
    await agent?.exited;
    await server?.stop();
    rmSync(certs.dir, { recursive: true, force: true });
  }
}

describe("the systemd unit install.sh writes", () => {
  test.each(["plain", "docker"] as const)("%s: systemd-analyze security rates its exposure at most 2.5", async (variant) => {
    const unit = units[variant];
    expect(unit.includes("AmbientCapabilities=CAP_DAC_READ_SEARCH\n")).toBe(variant === "docker");
    const file = join(tmp.path, `security-${variant}.service`);
    writeFileSync(file, unit);
    const r = await sh(["systemd-analyze", "security", "--offline=yes", "--no-pager", file]);
    expect(r.code).toBe(0);
    const level = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.out);
    expect(level).not.toBeNull();
    console.log(`${variant}: overall exposure ${level![1]}`);
    expect(Number(level![1])).toBeLessThanOrEqual(2.5);
  });

  test.each(["plain", "docker"] as const)("%s: systemd-analyze verify has nothing to say", async (variant) => {
    // verify checks that ExecStart exists on this host: the unit is checked pointing at the installed binary.
    const dir = join(tmp.path, `verify-${variant}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "nagare.service"), units[variant].replaceAll("/usr/local/bin/nagare", join(tmp.path, variant, "usr/local/bin/nagare")));
    const r = await sh(["systemd-analyze", "verify", "--man=no", join(dir, "nagare.service")]);
    expect(r.out + r.err).toBe("");
    expect(r.code).toBe(0);
  });

  test("the compiled agent, journalctl and ExecReload's kill make only system calls and sockets the unit allows", async () => {
    const unit = units.docker;
    for (const key of ["SystemCallFilter", "SystemCallErrorNumber", "RestrictAddressFamilies", "SystemCallArchitectures", "RestrictNamespaces"]) {
      expect(directive(units.plain, key)).toEqual(directive(unit, key)); // one run covers both variants
    }
    const allowed = await allowedSyscalls(unit);
    const families = directive(unit, "RestrictAddressFamilies").flatMap((v) => v.split(/\s+/));
    expect(families.length).toBeGreaterThan(0);
    expect(families.filter((f) => !(f in FAMILIES))).toEqual([]);
    expect(directive(unit, "SystemCallArchitectures")).toEqual(["native"]);
    const native = process.arch === "x64" ? "x86-64" : "aarch64";
    for (const program of [binary, Bun.which("journalctl")!, Bun.which("stdbuf")!, "/bin/kill"]) expect(elfMachine(program)).toBe(native);

    const dir = join(tmp.path, "run");
    mkdirSync(dir, { recursive: true });
    await tracedRun(dir, families.map((f) => String(FAMILIES[f])));

    const traced = { validate: binary, run: binary, kill: "/bin/kill" };
    const traces = Object.entries(traced).map(([name, program]) => parseTrace(readFileSync(join(dir, `${name}.trace`), "utf8"), program));
    expect(traces.flatMap((t) => t.other)).toEqual([]);
    const used = new Set(traces.flatMap((t) => [...t.syscalls]));
    expect(used.size).toBeGreaterThan(40);
    expect([...used].filter((name) => !allowed(name)).sort()).toEqual([]);
    // Every socket of an allowed family was made; every other one was refused, and the agent shipped anyway.
    const sockets = traces.flatMap((t) => t.sockets);
    expect(sockets.filter((s) => families.includes(s.family) === s.refused)).toEqual([]);
    expect(sockets.some((s) => s.family === "AF_INET" && !s.refused)).toBe(true);
    // Why the unit leaves MemoryDenyWriteExecute=yes out: JavaScriptCore's JIT asks for writable, executable
    // memory (refused, it falls back to its interpreter).
    expect(traces[1]!.writableExecutable).toBeGreaterThan(0);
    expect(directive(unit, "MemoryDenyWriteExecute")).toEqual([]);
  }, 300_000);
});
