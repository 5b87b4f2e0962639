/** install.sh with a local binary into a --root tree: files and modes, config kept on a second run, shellcheck. */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/journal.ts";
import { ROOT } from "./support/agent.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

async function sh(args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(args, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out: out + err };
}

test("shellcheck install.sh", async () => {
  const r = await sh(["shellcheck", "install.sh"]);
  expect(r.out).toBe("");
  expect(r.code).toBe(0);
});

test("installs the binary and a validated config into --root, and keeps an edited config", async () => {
  const build = await sh(["bash", "scripts/build.sh"]);
  expect(build.code).toBe(0);
  const root = join(tmp.path, "root");
  const first = await sh(["sh", "install.sh", "--binary", "dist/nagare", "--root", root]);
  expect(first.code).toBe(0);
  const binary = join(root, "usr/local/bin/nagare");
  const config = join(root, "etc/nagare/nagare.yaml");
  expect(statSync(binary).mode & 0o777).toBe(0o755);
  expect(statSync(config).mode & 0o777).toBe(0o644);
  expect(first.out).toContain(`wrote ${config}`);
  expect(first.out).toContain(`validated ${config}`);

  const edited = readFileSync(config, "utf8").replace("start_at: tail", "start_at: head");
  writeFileSync(config, edited);
  const second = await sh(["sh", "install.sh", "--binary", "dist/nagare", "--root", root]);
  expect(second.code).toBe(0);
  expect(second.out).toContain(`kept the existing ${config}`);
  expect(readFileSync(config, "utf8")).toBe(edited);
  expect(existsSync(join(root, "usr/local/bin/.nagare.new"))).toBe(false);
}, 120_000);

test("refuses a missing binary and an invalid existing config", async () => {
  const root = join(tmp.path, "bad");
  expect((await sh(["sh", "install.sh", "--binary", join(tmp.path, "nope"), "--root", root])).code).toBe(1);
  const ok = await sh(["sh", "install.sh", "--binary", "dist/nagare", "--root", root]);
  expect(ok.code).toBe(0);
  writeFileSync(join(root, "etc/nagare/nagare.yaml"), "sources: {}\n");
  const r = await sh(["sh", "install.sh", "--binary", "dist/nagare", "--root", root]);
  expect(r.code).toBe(78);
  expect(r.out).toContain("sources: at least one source is needed");
}, 120_000);
