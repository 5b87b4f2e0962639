/**
 * The .deb and .rpm that scripts/release.sh writes (deploy/packages/build.sh). The .deb is installed for real
 * with dpkg into a throwaway Debian made by `debootstrap --variant=minbase` (about 30 s from the mirror), so its
 * maintainer scripts run as on a host: the binary runs, the nagare user exists and reads the config, the unit
 * (the one install.sh writes, at /usr/bin/nagare) is enabled and passes `systemd-analyze verify`, an edited
 * config survives a reinstall, `dpkg -r` removes binary and unit and `dpkg --purge` the rest. The .rpm's file
 * list, config flags and scriptlets are read with rpm -qp, and it is installed with `rpm --root` into a copy of
 * the same Debian, whose useradd its %pre runs.
 *
 * Everything happens in the test's temp dir; chroot commands run in a private mount namespace, so the /proc
 * they mount disappears with them and the host keeps no mount, user or file even when a test fails.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/util.ts";
import { ROOT } from "./support/agent.ts";
import { writeOsTree } from "./support/os-tree.ts";

const isRoot = process.getuid?.() === 0;
const tmp = tempDir();
const dist = join(tmp.path, "dist");
const debian = join(tmp.path, "debian");
const rpmRoot = join(tmp.path, "rpm-root");
const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const suite = /^VERSION_CODENAME=(\w+)$/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? "bookworm";
const mirror = process.env.NAGARE_DEBOOTSTRAP_MIRROR ?? "http://deb.debian.org/debian";
const files = { deb: "", rpm: "" };

async function sh(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(args, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, out, err };
}

/**
 * Private mount and pid namespaces: what is mounted in them goes when they end, and when their first process
 * ends (or unshare is killed on a timeout), the kernel kills every other process in them.
 */
const isolated = ["unshare", "--mount", "--pid", "--fork", "--kill-child"];

/** A command inside a tree, with /proc mounted (the compiled binary reads /proc/self/exe). */
const inTree = (tree: string, args: string[]) => sh([...isolated, "sh", "-c", 'mount -t proc proc "$1/proc" && exec chroot "$@"', "sh", tree, ...args]);

const dpkg = (...args: string[]) => inTree(debian, ["dpkg", ...args]);

/** "user:group mode" of a path in a tree, names from the tree's own account files. */
function owner(tree: string, path: string): string {
  const st = statSync(join(tree, path));
  const nameOf = (file: string, id: number) =>
    readFileSync(join(tree, "etc", file), "utf8").split("\n").map((l) => l.split(":")).find((f) => Number(f[2]) === id)?.[0];
  return `${nameOf("passwd", st.uid)}:${nameOf("group", st.gid)} ${(st.mode & 0o777).toString(8)}`;
}

const accountLines = (tree: string, file: string) => readFileSync(join(tree, "etc", file), "utf8").split("\n").filter((l) => l.startsWith("nagare:"));

/** Members of a group in a tree's /etc/group. */
const membersOf = (tree: string, group: string) =>
  (readFileSync(join(tree, "etc/group"), "utf8").split("\n").find((l) => l.startsWith(`${group}:`))?.split(":")[3] ?? "").split(",").filter(Boolean);

const exists = (tree: string, path: string) => {
  try {
    lstatSync(join(tree, path));
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  if (!isRoot) return;
  // The build is CPU-bound and debootstrap mostly waits for the mirror: both at once. Fast compression: the
  // packages differ from the released ones only in how their payload is compressed.
  const [release, bootstrap] = await Promise.all([
    sh(["bash", "scripts/release.sh", dist], { NAGARE_PACKAGE_COMPRESSION: "fast" }, 300_000),
    // debootstrap mounts /proc and /sys in the tree while it works: isolated, no mount outlives it.
    sh([...isolated, "debootstrap", "--variant=minbase", suite, debian, mirror], {}, 300_000),
  ]);
  expect(release.err).toBe("");
  expect(release.code).toBe(0);
  if (bootstrap.code !== 0) throw new Error(`debootstrap ${suite} from ${mirror} failed (set NAGARE_DEBOOTSTRAP_MIRROR for another mirror):\n${bootstrap.err.slice(-2000)}`);
  const arch = (await sh(["dpkg", "--print-architecture"])).out.trim();
  files.deb = join(dist, `nagare_${version}_${arch}.deb`);
  files.rpm = join(dist, `nagare-${version}-1.${process.arch === "arm64" ? "aarch64" : "x86_64"}.rpm`);
  // cp -a: the tree holds device nodes (/dev/null, ...), which fs.cpSync cannot copy.
  const copy = await sh(["cp", "-a", debian, rpmRoot]);
  expect(copy.err).toBe("");
  expect(copy.code).toBe(0);
  cpSync(files.deb, join(debian, "tmp/nagare.deb"));
}, 400_000);

afterAll(() => {
  // A mount left under the temp dir would make rm -r reach into the host's /proc: refuse rather than delete.
  const mounts = readFileSync("/proc/self/mounts", "utf8").split("\n").filter((l) => l.split(" ")[1]?.startsWith(tmp.path));
  if (mounts.length > 0) throw new Error(`mounts remain under ${tmp.path}, not removed: ${mounts.join("; ")}`);
  tmp.cleanup();
});

test("the packaging script and the maintainer scripts are shellcheck-clean", async () => {
  const scripts = ["deploy/packages/build.sh", "deploy/packages/deb/postinst", "deploy/packages/deb/prerm", "deploy/packages/deb/postrm"];
  const r = await sh(["shellcheck", ...scripts]);
  expect(r.out).toBe("");
  expect(r.code).toBe(0);
});

describe.skipIf(!isRoot)("packages (root only: dpkg -i into a debootstrap chroot)", () => {
  test("release.sh writes nagare_<version>_<arch>.deb and nagare-<version>-1.<arch>.rpm", () => {
    expect(existsSync(files.deb)).toBe(true);
    expect(existsSync(files.rpm)).toBe(true);
  });

  test("dpkg -i in a fresh Debian: the binary runs, the nagare user exists, config and state belong to it, the unit is enabled", async () => {
    const r = await dpkg("-i", "/tmp/nagare.deb");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect((await inTree(debian, ["nagare", "version"])).out).toStartWith(`nagare ${version} (`);
    expect(owner(debian, "usr/bin/nagare")).toBe("root:root 755");
    expect(accountLines(debian, "passwd")).toEqual([expect.stringMatching(/^nagare:x:\d+:\d+:nagare log agent,*:\/var\/lib\/nagare:\/usr\/sbin\/nologin$/)]);
    // A minbase Debian has no systemd, hence no systemd-journal group: adm (journal files are group adm too).
    expect(membersOf(debian, "adm")).toContain("nagare");
    expect(owner(debian, "etc/nagare")).toBe("root:nagare 750");
    expect(owner(debian, "etc/nagare/nagare.yaml")).toBe("root:nagare 640");
    expect(owner(debian, "var/lib/nagare")).toBe("nagare:nagare 750");
    expect(owner(debian, "var/log/nagare")).toBe("nagare:nagare 750");
    expect(readlinkSync(join(debian, "etc/systemd/system/multi-user.target.wants/nagare.service"))).toBe("/lib/systemd/system/nagare.service");
    expect((await dpkg("-s", "nagare")).out).toContain("Status: install ok installed");
  });

  test("the unit, config and logrotate rule are install.sh's, the unit pointing at /usr/bin/nagare, and systemd-analyze verify is silent", async () => {
    const tree = writeOsTree(join(tmp.path, "install-sh"));
    const installed = await sh(["sh", "install.sh", "--root", tree, "--binary", join(dist, "nagare"), "--no-start"]);
    expect(installed.code).toBe(0);
    const unit = readFileSync(join(debian, "lib/systemd/system/nagare.service"), "utf8");
    expect(unit).toBe(readFileSync(join(tree, "etc/systemd/system/nagare.service"), "utf8").replaceAll("/usr/local/bin/nagare", "/usr/bin/nagare"));
    expect(unit).toContain("\nExecStart=/usr/bin/nagare run -c /etc/nagare/nagare.yaml\n");
    expect(readFileSync(join(debian, "etc/nagare/nagare.yaml"), "utf8")).toBe(readFileSync(join(tree, "etc/nagare/nagare.yaml"), "utf8"));
    expect(readFileSync(join(debian, "etc/logrotate.d/nagare"), "utf8")).toBe(
      readFileSync(join(tree, "etc/logrotate.d/nagare"), "utf8").replace("# Written by nagare's install.sh:", "# Installed by the nagare package:"),
    );
    // verify checks that the programs exist on this host: the unit is checked pointing at the installed binary.
    const check = join(tmp.path, "verify", "nagare.service");
    mkdirSync(join(tmp.path, "verify"));
    writeFileSync(check, unit.replaceAll("/usr/bin/nagare", join(debian, "usr/bin/nagare")));
    const verify = await sh(["systemd-analyze", "verify", "--man=no", check]);
    expect(verify.out + verify.err).toBe("");
    expect(verify.code).toBe(0);
  });

  test("the nagare user reads the installed config with the installed binary (ExecStartPre's validate); another user cannot", async () => {
    const env = ["env", "NAGARE_DATA_DIR=/var/lib/nagare", "NAGARE_LOG_DIR=/var/log/nagare", "/usr/bin/nagare", "validate", "-c", "/etc/nagare/nagare.yaml"];
    const asNagare = await inTree(debian, ["setpriv", "--reuid=nagare", "--regid=nagare", "--init-groups", ...env]);
    // Valid; the environment is not ready only because this minimal Debian has no journalctl (exit 69).
    expect(asNagare.out).toContain("/etc/nagare/nagare.yaml: the config is valid (1 source(s), 1 sink(s))");
    expect(asNagare.err).toContain("journalctl not found");
    expect(asNagare.code).toBe(69);
    const asNobody = await inTree(debian, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...env]);
    expect(asNobody.err).toContain("cannot read the config file (EACCES)");
    expect(asNobody.code).toBe(78);
  });

  test("an edited config is kept when the package is installed again, with its owner; still one nagare user", async () => {
    const config = join(debian, "etc/nagare/nagare.yaml");
    const edited = readFileSync(config, "utf8").replace("start_at: tail", "start_at: head");
    expect(edited).not.toBe(readFileSync(config, "utf8"));
    writeFileSync(config, edited);
    writeFileSync(join(debian, "var/lib/nagare/checkpoint-marker"), "kept");
    const r = await dpkg("-i", "/tmp/nagare.deb");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(readFileSync(config, "utf8")).toBe(edited);
    expect(owner(debian, "etc/nagare/nagare.yaml")).toBe("root:nagare 640");
    expect(readFileSync(join(debian, "var/lib/nagare/checkpoint-marker"), "utf8")).toBe("kept");
    expect(accountLines(debian, "passwd").length).toBe(1);
    expect(accountLines(debian, "group").length).toBe(1);
  });

  test("dpkg -r removes the binary and the unit and keeps config, checkpoints and user", async () => {
    const r = await dpkg("-r", "nagare");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(exists(debian, "usr/bin/nagare")).toBe(false);
    expect(exists(debian, "lib/systemd/system/nagare.service")).toBe(false);
    expect(readFileSync(join(debian, "etc/nagare/nagare.yaml"), "utf8")).toContain("start_at: head");
    expect(readFileSync(join(debian, "var/lib/nagare/checkpoint-marker"), "utf8")).toBe("kept");
    expect(accountLines(debian, "passwd").length).toBe(1);
    expect((await dpkg("-s", "nagare")).out).toContain("Status: deinstall ok config-files");
  });

  test("dpkg --purge removes config, checkpoints, logs, the enabled state and the stat overrides; the user stays", async () => {
    const r = await dpkg("--purge", "nagare");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    for (const path of ["etc/nagare", "etc/logrotate.d/nagare", "var/lib/nagare", "var/log/nagare", "etc/systemd/system/multi-user.target.wants/nagare.service"]) {
      expect([path, exists(debian, path)]).toEqual([path, false]);
    }
    expect((await inTree(debian, ["dpkg-statoverride", "--list"])).out).not.toContain("nagare");
    expect((await dpkg("-s", "nagare")).code).not.toBe(0);
    expect(accountLines(debian, "passwd").length).toBe(1);
  });

  test("rpm -qlp and -qcp: binary, unit in /usr/lib/systemd/system, config and logrotate rule as config(noreplace), owned state dirs", async () => {
    const list = await sh(["rpm", "-qlpv", files.rpm]);
    expect(list.code).toBe(0);
    const entries = list.out.trim().split("\n").map((l) => {
      const f = l.split(/\s+/);
      return `${f[0]} ${f[2]}:${f[3]} ${f.at(-1)}`;
    });
    expect(entries.sort()).toEqual([
      "-rw-r----- root:nagare /etc/nagare/nagare.yaml",
      "-rw-r--r-- root:root /etc/logrotate.d/nagare",
      "-rw-r--r-- root:root /usr/lib/systemd/system/nagare.service",
      "-rwxr-xr-x root:root /usr/bin/nagare",
      "drwxr-x--- nagare:nagare /var/lib/nagare",
      "drwxr-x--- nagare:nagare /var/log/nagare",
      "drwxr-x--- root:nagare /etc/nagare",
    ]);
    expect((await sh(["rpm", "-qcp", files.rpm])).out.trim().split("\n")).toEqual(["/etc/logrotate.d/nagare", "/etc/nagare/nagare.yaml"]);
    // config(noreplace): %{FILEFLAGS} has RPMFILE_CONFIG (1) and RPMFILE_NOREPLACE (16).
    const flags = await sh(["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS}\n]", files.rpm]);
    const noreplace = flags.out.trim().split("\n").filter((l) => (Number(l.split(" ")[1]) & 17) === 17).map((l) => l.split(" ")[0]);
    expect(noreplace).toEqual(["/etc/logrotate.d/nagare", "/etc/nagare/nagare.yaml"]);
  });

  test("rpm -qp --scripts: %pre creates the user, %post enables, %preun disables on erase, %postun reloads", async () => {
    const r = await sh(["rpm", "-qp", "--scripts", files.rpm]);
    expect(r.code).toBe(0);
    const scriptlets: Record<string, string> = {};
    let current = "";
    for (const line of r.out.split("\n")) {
      const header = /^(\w+) scriptlet \(using \/bin\/sh\):$/.exec(line);
      if (header) scriptlets[(current = header[1]!)] = "";
      else if (current) scriptlets[current] += `${line}\n`;
    }
    expect(Object.keys(scriptlets)).toEqual(["preinstall", "postinstall", "preuninstall", "postuninstall"]);
    const scriptlet = (name: string) => scriptlets[name]!;
    expect(scriptlet("preinstall")).toContain("useradd -r -g nagare");
    expect(scriptlet("preinstall")).toContain("groupadd -r nagare");
    expect(scriptlet("postinstall")).toContain("systemctl --no-reload enable nagare.service");
    expect(scriptlet("preuninstall")).toContain("systemctl --no-reload disable");
    expect(scriptlet("postuninstall")).toContain("systemctl daemon-reload");
  });

  test("rpm --root installs into a Debian: %pre's useradd makes the user, files get their owners; an edited config survives a reinstall; erase removes binary and unit", async () => {
    // Debian's rpm wants its database made first, and knows nothing of the glibc and shadow-utils dpkg installed.
    expect((await sh(["rpm", "--root", rpmRoot, "--initdb"])).code).toBe(0);
    const install = await sh(["rpm", "--root", rpmRoot, "-i", "--nodeps", files.rpm]);
    expect(install.code).toBe(0);
    expect(accountLines(rpmRoot, "passwd")).toEqual([expect.stringMatching(/^nagare:x:\d+:\d+:nagare log agent:\/var\/lib\/nagare:\/sbin\/nologin$/)]);
    expect(membersOf(rpmRoot, "adm")).toContain("nagare");
    expect(owner(rpmRoot, "etc/nagare/nagare.yaml")).toBe("root:nagare 640");
    expect(owner(rpmRoot, "var/lib/nagare")).toBe("nagare:nagare 750");
    expect((await inTree(rpmRoot, ["nagare", "version"])).out).toStartWith(`nagare ${version} (`);
    const config = join(rpmRoot, "etc/nagare/nagare.yaml");
    const edited = readFileSync(config, "utf8").replace("start_at: tail", "start_at: head");
    writeFileSync(config, edited);
    const again = await sh(["rpm", "--root", rpmRoot, "-U", "--replacepkgs", "--nodeps", files.rpm]);
    expect(again.code).toBe(0);
    expect(readFileSync(config, "utf8")).toBe(edited);
    const erase = await sh(["rpm", "--root", rpmRoot, "-e", "--nodeps", "nagare"]);
    expect(erase.code).toBe(0);
    expect(exists(rpmRoot, "usr/bin/nagare")).toBe(false);
    expect(exists(rpmRoot, "usr/lib/systemd/system/nagare.service")).toBe(false);
    // An edited config is kept as .rpmsave, as rpm does for every changed config file.
    expect(readFileSync(`${config}.rpmsave`, "utf8")).toBe(edited);
  });
});
