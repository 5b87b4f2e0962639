/**
 * install.sh against a local HTTP server serving a release directory, into --root trees: files, modes and
 * owners; a tampered binary refused; upgrade keeps an edited config; --uninstall and --purge; the unit passes
 * systemd-analyze verify; shellcheck; the installed binary with the installed config ships a real journal into
 * the records file and prints nothing (under systemd its stdout is the journal it reads); and the installed
 * logrotate rule rotates that file under the running agent. test/unit-hardening.test.ts checks the unit's sandbox.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { Server } from "bun";
import { sequenceEntries, writeJournal } from "./support/journal.ts";
import { tempDir, waitFor } from "./support/util.ts";
import { readJsonLines, ROOT, RunningAgent } from "./support/agent.ts";
import { seqsOf } from "./support/config.ts";
import { writeOsTree } from "./support/os-tree.ts";
import { loadConfigText } from "../src/config/load.ts";

const tmp = tempDir();
let server: Server<undefined>;
let base = "";
const releases = join(tmp.path, "releases");

async function sh(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(args, { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 120_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, out: out + err };
}

/** A target tree in the test's temp dir (see writeOsTree). */
function targetRoot(name: string): string {
  return writeOsTree(join(tmp.path, name));
}

const install = (root: string, extra: string[] = [], from = "good") => sh(["sh", "install.sh", "--root", root, ...extra], { NAGARE_BASE_URL: `${base}/${from}` });
const nameOf = (root: string, file: "passwd" | "group", id: number) =>
  readFileSync(join(root, "etc", file), "utf8").split("\n").map((l) => l.split(":")).find((f) => Number(f[2]) === id)?.[0];
const owner = (root: string, path: string) => {
  const st = statSync(join(root, path));
  return `${nameOf(root, "passwd", st.uid)}:${nameOf(root, "group", st.gid)} ${(st.mode & 0o777).toString(8)}`;
};

beforeAll(async () => {
  // Released straight into the served directory, leaving dist/ alone.
  // The .deb and .rpm it also writes are test/packages.test.ts's; fast compression keeps them cheap here.
  const release = await sh(["bash", "scripts/release.sh", join(releases, "good")], { NAGARE_PACKAGE_COMPRESSION: "fast" });
  expect(release.code).toBe(0);
  mkdirSync(join(releases, "tampered"), { recursive: true });
  for (const f of ["nagare-linux-x64", "nagare-linux-x64.sha256"]) copyFileSync(join(releases, "good", f), join(releases, "tampered", f));
  const bytes = readFileSync(join(releases, "tampered", "nagare-linux-x64"));
  bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] ?? 0) ^ 0xff;
  writeFileSync(join(releases, "tampered", "nagare-linux-x64"), bytes);
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = join(releases, new URL(req.url).pathname);
      return existsSync(path) && statSync(path).isFile() ? new Response(Bun.file(path)) : new Response("not found", { status: 404 });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
}, 180_000);

afterAll(() => {
  server?.stop(true);
  tmp.cleanup();
});

/** systemd-analyze verify checks that ExecStart exists on this host: the unit is checked pointing at the installed binary. */
async function verifyUnit(root: string, unit: string): Promise<void> {
  const check = join(tmp.path, `verify-${basename(root)}`);
  mkdirSync(check, { recursive: true });
  writeFileSync(join(check, "nagare.service"), unit.replaceAll("/usr/local/bin/nagare", join(root, "usr/local/bin/nagare")));
  const verify = await sh(["systemd-analyze", "verify", "--man=no", join(check, "nagare.service")]);
  expect(verify.out).toBe("");
  expect(verify.code).toBe(0);
}

describe("install.sh", () => {
  test("is shellcheck-clean (and so is release.sh)", async () => {
    const r = await sh(["shellcheck", "install.sh", "scripts/release.sh"]);
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  });

  test("downloads, verifies and installs into --root: binary, user, config, data dir, unit", async () => {
    const root = targetRoot("fresh");
    const r = await install(root);
    expect(r.code).toBe(0);
    expect(r.out).toContain("downloaded nagare-linux-x64 and verified its SHA-256");
    expect(r.out).toContain("the unit is installed but not started");
    expect(owner(root, "usr/local/bin/nagare")).toBe("root:root 755");
    expect(owner(root, "etc/nagare")).toBe("root:nagare 750");
    expect(owner(root, "etc/nagare/nagare.yaml")).toBe("root:nagare 640");
    expect(owner(root, "var/lib/nagare")).toBe("nagare:nagare 750");
    expect(owner(root, "var/log/nagare")).toBe("nagare:nagare 750");
    expect(owner(root, "etc/systemd/system/nagare.service")).toBe("root:root 644");
    expect(owner(root, "etc/logrotate.d/nagare")).toBe("root:root 644");
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).toMatch(/^nagare:x:\d+:\d+:nagare log agent:\/var\/lib\/nagare:\/usr\/sbin\/nologin$/m);
    expect(readFileSync(join(root, "etc/group"), "utf8")).toMatch(/^systemd-journal:x:101:nagare$/m);
    const unit = readFileSync(join(root, "etc/systemd/system/nagare.service"), "utf8");
    for (const line of ["Restart=always", "StateDirectory=nagare", "LogsDirectory=nagare", "Environment=NAGARE_DATA_DIR=/var/lib/nagare NAGARE_LOG_DIR=/var/log/nagare", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "ReadWritePaths=/var/lib/nagare", "LimitNOFILE=65536", "User=nagare", "SupplementaryGroups=systemd-journal"]) {
      expect(unit).toContain(`${line}\n`);
    }
    expect(unit).toContain("CapabilityBoundingSet=\n");
    const config = Bun.YAML.parse(readFileSync(join(root, "etc/nagare/nagare.yaml"), "utf8")) as { sources: Record<string, unknown>; sinks: Record<string, unknown> };
    expect(Object.keys(config.sources)).toEqual(["journal"]);
    // Not the console: under systemd the unit's stdout goes to the journal, which the journal source reads.
    expect(config.sinks).toEqual({ file: { type: "file", inputs: ["journal"], path: "${NAGARE_LOG_DIR:-/var/log/nagare}/records.jsonl" } });
    expect(readFileSync(join(root, "etc/logrotate.d/nagare"), "utf8")).toContain("/var/log/nagare/*.jsonl {\n    su nagare nagare\n");
    await verifyUnit(root, unit);
  });

  test("on a Docker host the config adds the container logs and the unit grants CAP_DAC_READ_SEARCH only", async () => {
    const root = targetRoot("docker");
    mkdirSync(join(root, "var/lib/docker/containers"), { recursive: true });
    const r = await install(root);
    expect(r.code).toBe(0);
    const config = Bun.YAML.parse(readFileSync(join(root, "etc/nagare/nagare.yaml"), "utf8")) as { sources: Record<string, unknown>; sinks: { file: { inputs: string[] } } };
    expect(config.sources.containers).toEqual({ type: "docker", include: ["/var/lib/docker/containers/*/*-json.log"], start_at: "tail" });
    expect(config.sinks.file.inputs).toEqual(["journal", "containers"]);
    const unit = readFileSync(join(root, "etc/systemd/system/nagare.service"), "utf8");
    expect(unit).toContain("AmbientCapabilities=CAP_DAC_READ_SEARCH\nCapabilityBoundingSet=CAP_DAC_READ_SEARCH\n");
    await verifyUnit(root, unit);
  });

  test("a second run upgrades the binary and keeps an edited config and the checkpoints", async () => {
    const root = targetRoot("upgrade");
    expect((await install(root)).code).toBe(0);
    const config = join(root, "etc/nagare/nagare.yaml");
    const edited = readFileSync(config, "utf8").replace("start_at: tail", "start_at: head");
    writeFileSync(config, edited);
    writeFileSync(join(root, "var/lib/nagare/checkpoint-marker"), "kept");
    const before = statSync(join(root, "usr/local/bin/nagare")).ino;
    const r = await install(root);
    expect(r.code).toBe(0);
    expect(r.out).toContain("upgraded");
    expect(r.out).toContain(`kept the existing ${config}`);
    expect(statSync(join(root, "usr/local/bin/nagare")).ino).not.toBe(before);
    expect(readFileSync(config, "utf8")).toBe(edited);
    expect(readFileSync(join(root, "var/lib/nagare/checkpoint-marker"), "utf8")).toBe("kept");
    expect(readFileSync(join(root, "etc/passwd"), "utf8").match(/^nagare:/gm)?.length).toBe(1);
  });

  test("a tampered binary is refused and nothing is installed", async () => {
    const root = targetRoot("tampered");
    const r = await install(root, [], "tampered");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/checksum mismatch for .*nagare-linux-x64: expected [0-9a-f]{64}, got [0-9a-f]{64}; refusing to install it/);
    expect(existsSync(join(root, "usr/local/bin/nagare"))).toBe(false);
  });

  test("clear errors: download failure, unsupported architecture, not root, invalid existing config", async () => {
    const missing = await install(targetRoot("missing"), [], "nowhere");
    expect(missing.code).toBe(1);
    expect(missing.out).toContain(`download failed: ${base}/nowhere/nagare-linux-x64`);
    const arch = await sh(["sh", "install.sh", "--root", targetRoot("arch")], { NAGARE_ARCH: "mips", NAGARE_BASE_URL: `${base}/good` });
    expect(arch.out).toContain("unsupported architecture mips");
    const user = await sh(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "install.sh", "--root", join(tmp.path, "nobody")]);
    expect(user.code).toBe(1);
    expect(user.out).toContain("must run as root");
    const bad = targetRoot("bad-config");
    mkdirSync(join(bad, "etc/nagare"), { recursive: true });
    writeFileSync(join(bad, "etc/nagare/nagare.yaml"), "sources: {}\n");
    const invalid = await install(bad);
    expect(invalid.code).toBe(1);
    expect(invalid.out).toContain("sources: at least one source is needed");
  });

  test("--root on a folder that is not an OS tree is refused, saying what it lacks, and nothing is installed", async () => {
    const error = (root: string, lacks: string) =>
      `nagare-install: error: --root ${root} does not look like an OS tree: it has no ${lacks} (the nagare user and group are added there); pass the root directory of the OS tree (image, chroot) to install into\n`;
    const empty = join(tmp.path, "not-a-tree");
    mkdirSync(empty);
    expect(await install(empty)).toEqual({ code: 1, out: error(empty, "etc/passwd and etc/group") });
    const half = join(tmp.path, "half-a-tree");
    mkdirSync(join(half, "etc"), { recursive: true });
    writeFileSync(join(half, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
    expect(await install(half)).toEqual({ code: 1, out: error(half, "etc/group") });
    expect(await install(half, ["--uninstall", "--purge"])).toEqual({ code: 1, out: error(half, "etc/group") });
    expect(readdirSync(empty)).toEqual([]);
    expect(readdirSync(half)).toEqual(["etc"]);
    expect(readdirSync(join(half, "etc"))).toEqual(["passwd"]);
    const nowhere = join(tmp.path, "no-such-dir");
    expect(await install(nowhere)).toEqual({
      code: 1,
      out: `nagare-install: error: --root ${nowhere} does not exist or is not a directory; pass the root directory of the OS tree (image, chroot) to install into\n`,
    });
    expect(existsSync(nowhere)).toBe(false);
  });

  test("--uninstall removes binary, unit and logrotate rule and keeps data; --purge removes config, data, logs and user", async () => {
    const root = targetRoot("uninstall");
    expect((await install(root)).code).toBe(0);
    const removed = await install(root, ["--uninstall"]);
    expect(removed.code).toBe(0);
    expect(existsSync(join(root, "usr/local/bin/nagare"))).toBe(false);
    expect(existsSync(join(root, "etc/systemd/system/nagare.service"))).toBe(false);
    expect(existsSync(join(root, "etc/logrotate.d/nagare"))).toBe(false);
    expect(existsSync(join(root, "etc/nagare/nagare.yaml"))).toBe(true);
    expect(existsSync(join(root, "var/lib/nagare"))).toBe(true);
    expect(existsSync(join(root, "var/log/nagare"))).toBe(true);
    const purged = await install(root, ["--uninstall", "--purge"]);
    expect(purged.code).toBe(0);
    expect(existsSync(join(root, "etc/nagare"))).toBe(false);
    expect(existsSync(join(root, "var/lib/nagare"))).toBe(false);
    expect(existsSync(join(root, "var/log/nagare"))).toBe(false);
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).not.toContain("nagare:");
  });

  /** The installed binary with the installed config, reading a real journal (5 entries) from its tail. */
  async function startInstalled(root: string): Promise<{ agent: RunningAgent; journal: string; records: string }> {
    const journal = join(root, "host-journal");
    await writeJournal(journal, sequenceEntries(1, 5));
    // The installed config reads "the host's journal": journalctl on PATH is a wrapper pointing at a real one.
    const bin = join(root, "host-bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "journalctl"), `#!/bin/sh\nexec ${Bun.which("journalctl")} --directory=${journal} "$@"\n`, { mode: 0o755 });
    const agent = new RunningAgent(join(root, "etc/nagare/nagare.yaml"), {
      command: [join(root, "usr/local/bin/nagare")],
      env: { PATH: `${bin}:/usr/bin:/bin`, NAGARE_DATA_DIR: join(root, "var/lib/nagare"), NAGARE_LOG_DIR: join(root, "var/log/nagare") },
      stdout: "pipe",
    });
    await waitFor("the reader at the tail", () => agent.entries().some((e) => /reads the journal from cursor/.test(e.msg)), 20_000);
    return { agent, journal, records: join(root, "var/log/nagare/records.jsonl") };
  }

  test("the installed binary, run with the installed config, ships a real journal into the records file and prints nothing", async () => {
    const root = targetRoot("ships");
    expect((await install(root)).code).toBe(0);
    const { agent, journal, records } = await startInstalled(root);
    const stdout = new Response(agent.stdout).text();
    await writeJournal(journal, sequenceEntries(6, 3));
    await waitFor("3 records in the records file", () => readJsonLines(records).length >= 3, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(records))).toEqual([6, 7, 8]);
    expect(await stdout).toBe("");
    expect(existsSync(join(root, "var/lib/nagare/checkpoints/journal.json"))).toBe(true);
  });

  test("the installed logrotate rule rotates the records file under the running agent, which goes on in the new file; nothing lost", async () => {
    const root = targetRoot("rotate");
    expect((await install(root)).code).toBe(0);
    const { agent, journal, records } = await startInstalled(root);
    await writeJournal(journal, sequenceEntries(6, 3));
    await waitFor("3 records in the records file", () => readJsonLines(records).length >= 3, 20_000);
    // The rule as installed, pointed at the --root tree; `su root root`: the tree's nagare user is not this host's.
    const logs = join(root, "var/log/nagare");
    const rule = readFileSync(join(root, "etc/logrotate.d/nagare"), "utf8").replaceAll("/var/log/nagare", logs).replace("su nagare nagare", "su root root").replace("create 0640 nagare nagare", "create 0640 root root");
    writeFileSync(join(root, "logrotate.conf"), rule);
    const rotate = await sh(["logrotate", "--force", "--state", join(root, "logrotate.state"), join(root, "logrotate.conf")]);
    expect(rotate.out).toBe("");
    expect(rotate.code).toBe(0);
    expect(seqsOf(readJsonLines(`${records}.1`))).toEqual([6, 7, 8]);
    expect(statSync(records).size).toBe(0);
    expect(statSync(records).mode & 0o777).toBe(0o640);
    await writeJournal(journal, sequenceEntries(9, 3));
    await waitFor("3 records in the new records file", () => readJsonLines(records).length >= 3, 20_000);
    expect(await agent.stop()).toBe(0);
    expect(seqsOf(readJsonLines(records))).toEqual([9, 10, 11]);
    expect(seqsOf(readJsonLines(`${records}.1`))).toEqual([6, 7, 8]);
  });
});

describe("deployment examples", () => {
  const manifests = ["deploy/kubernetes/daemonset.yaml", "deploy/kubernetes/sidecar.yaml", "deploy/ami/cloud-init.yaml"];
  test.each(manifests)("the nagare config embedded in %s is valid", (file) => {
    const text = readFileSync(join(ROOT, file), "utf8");
    const configs: string[] = [];
    for (const doc of text.split(/^---$/m)) {
      const parsed = Bun.YAML.parse(doc) as { data?: Record<string, string>; write_files?: { path: string; content: string }[] } | null;
      if (parsed?.data?.["nagare.yaml"]) configs.push(parsed.data["nagare.yaml"]);
      for (const f of parsed?.write_files ?? []) if (f.path.endsWith("nagare.yaml")) configs.push(f.content);
    }
    expect(configs.length).toBe(1);
    const loaded = loadConfigText(configs[0]!, "embedded.yaml", {});
    expect(loaded.ok ? [] : loaded.problems).toEqual([]);
  });

  test.each(["deploy/kubernetes/nagare.yaml", "deploy/ami/nagare.yaml"])("%s is valid", (file) => {
    const loaded = loadConfigText(readFileSync(join(ROOT, file), "utf8"), file, {});
    expect(loaded.ok ? [] : loaded.problems).toEqual([]);
  });
});
