/**
 * `nagare validate`: one line per problem naming the key path (syntax errors: file, line and column); every
 * problem in one run. A wrong config exits 78, a machine not ready for a valid one exits 69, a good one 0.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, runCli } from "./support/agent.ts";

const dir = mkdtempSync(join(tmpdir(), "nagare-validate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GOOD = `
data_dir: ${dir}/data
sources:
  journal: { type: journald, directory: ${dir}, start_at: head }
sinks:
  out: { type: file, inputs: [journal], path: ${dir}/out.jsonl }
`;

function configFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function validate(path: string, env: Record<string, string> = {}) {
  return runCli(["validate", "-c", path], env);
}

describe("nagare validate", () => {
  test("a good config exits 0", async () => {
    const r = await validate(configFile("good.yaml", GOOD));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("valid");
  });

  const examples = readdirSync(join(import.meta.dir, "..", "examples")).filter((f) => /\.(ya?ml|json)$/.test(f));
  test.each(examples)("the example %s is valid", async (example) => {
    const r = await validate(join(import.meta.dir, "..", "examples", example), { NAGARE_DATA_DIR: `${dir}/ex`, NAGARE_OUT: `${dir}/ex.jsonl`, FORWARD_SHARED_KEY: "k" });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  const broken: [string, string, RegExp][] = [
    ["typo'd key", GOOD.replace("start_at: head", "strat_at: head"), /^sources\.journal\.strat_at: unknown key \(did you mean "start_at"\?\)$/m],
    ["typo'd top-level key", `${GOOD}\ncheckpoint_intervall: 1s\n`, /^checkpoint_intervall: unknown key/m],
    ["wrong type", `${GOOD}\nbuffer: { batch_max_records: many }\n`, /^buffer\.batch_max_records: expected number/m],
    ["bad size string", `${GOOD}\nbuffer: { max_bytes: 64MB/s }\n`, /^buffer\.max_bytes: expected a size/m],
    ["bad duration", `${GOOD}\nshutdown_timeout: soon\n`, /^shutdown_timeout: expected a duration/m],
    ["unknown input", GOOD.replace("inputs: [journal]", "inputs: [jornal]"), /^sinks\.out\.inputs\[0\]: unknown source "jornal"/m],
    ["missing sink field", GOOD.replace(`, path: ${dir}/out.jsonl`, ""), /^sinks\.out\.path: required$/m],
    ["unknown sink type", GOOD.replace("type: file", "type: kafak"), /^sinks\.out\.type: expected one of "console", "file"/m],
    ["bad enum", GOOD.replace("start_at: head", "start_at: begin"), /^sources\.journal\.start_at: expected one of "head", "tail"$/m],
    ["invalid YAML", "sources: [unclosed\n", /^\S+\/invalid-YAML\.yaml:2:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a \]$/m],
    ["duplicate key", GOOD.replace("type: file,", "type: file, type: console,"), /^\S+\/duplicate-key\.yaml:6:22: duplicate key "type"$/m],
    ["alias inside its own anchor", `${GOOD}  loop: &l { type: console, inputs: [*l] }\n`, /^\S+\/alias-inside-its-own-anchor\.yaml:7:38: invalid YAML: the alias \*l is inside the node it refers to$/m],
    ["unset variable", GOOD.replace(`${dir}/data`, "${NAGARE_NOT_SET_ANYWHERE}"), /^data_dir: environment variable NAGARE_NOT_SET_ANYWHERE is not set/m],
    ["source read by no sink", `${GOOD.replace("sinks:", "  other: { type: journald }\nsinks:")}`, /^sources\.other: no sink reads this source/m],
    ["url and file together", GOOD.replace(`directory: ${dir}`, "url: http://127.0.0.1:19531, file: /x"), /^sources\.journal\.url: set either `url` or `file`, not both$/m],
    ["empty inputs", GOOD.replace("inputs: [journal]", "inputs: []"), /^sinks\.out\.inputs: needs at least 1 item/m],
    ["kafka sink with no brokers", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: [], topic: logs }\n`, /^sinks\.kafka\.brokers: needs at least 1 item/m],
    ["kafka acks: none", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:9092"], topic: logs, acks: none }\n`, /^sinks\.kafka\.acks: acks: none cannot gate a cursor/m],
    ["kafka bad template", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:9092"], topic: "logs-{{hostname}}" }\n`, /^sinks\.kafka\.topic: unknown placeholder \{\{hostname\}\}/m],
    ["forward sink with no servers", `${GOOD}  fwd: { type: forward, inputs: [journal], servers: [], tag: logs }\n`, /^sinks\.fwd\.servers: needs at least 1 item/m],
    ["forward user without shared key", `${GOOD}  fwd: { type: forward, inputs: [journal], servers: [{ host: agg }], tag: logs, username: u, password: p }\n`, /^sinks\.fwd\.shared_key: user authentication needs shared_key/m],
    ["forward only standby servers", `${GOOD}  fwd: { type: forward, inputs: [journal], servers: [{ host: agg, standby: true }], tag: logs }\n`, /^sinks\.fwd\.servers: at least one server must not be standby/m],
  ];

  for (const [what, text, expected] of broken) {
    test(`refuses: ${what}`, async () => {
      const r = await validate(configFile(`${what.replace(/\W+/g, "-")}.yaml`, text));
      expect(r.code).toBe(78);
      expect(r.stderr).toMatch(expected);
      for (const line of r.stderr.trim().split("\n")) expect(line).toMatch(/^[\w.\[\]-]+: |^\S+\.yaml(:\d+:\d+)?: /);
      expect(r.stdout).not.toContain("valid");
    });
  }

  // The config is right; the machine is not ready for it (yet).
  const unready: [string, string, RegExp][] = [
    ["unreadable journal file", GOOD.replace(`directory: ${dir}`, `file: ${dir}/missing.export`), /^sources\.journal\.file: cannot read .*missing\.export \(ENOENT\)$/m],
    ["kafka missing TLS file", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:9093"], topic: logs, tls: { ca: ${dir}/missing-ca.pem } }\n`, /^sinks\.kafka\.tls\.ca: cannot read .*missing-ca\.pem \(ENOENT\)$/m],
    ["docker include under a file", `${GOOD.replace("sinks:", `  containers: { type: docker, include: ["/etc/passwd/*/*-json.log"] }\nsinks:`).replace("inputs: [journal]", "inputs: [journal, containers]")}`, /^sources\.containers\.include\[0\]: \/etc\/passwd is not a directory$/m],
    ["journalctl not on PATH", GOOD.replace(`directory: ${dir}`, "journalctl: journalctlx"), /^sources\.journal\.journalctl: program journalctlx not found on PATH$/m],
    ["journalctl path missing", GOOD.replace(`directory: ${dir}`, `journalctl: ${dir}/bin/journalctlx`), /^sources\.journal\.journalctl: program \S+\/bin\/journalctlx not found$/m],
    ["journalctl path not executable", GOOD.replace(`directory: ${dir}`, `journalctl: ${dir}/not-a-program`), /^sources\.journal\.journalctl: program \S+\/not-a-program is not executable \(EACCES\)$/m],
  ];

  for (const [what, text, expected] of unready) {
    test(`environment not ready, exit 69: ${what}`, async () => {
      writeFileSync(join(dir, "not-a-program"), "#!/bin/sh\n", { mode: 0o644 });
      const path = configFile(`${what.replace(/\W+/g, "-")}.yaml`, text);
      const r = await validate(path);
      expect(r.stderr).toMatch(expected);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stdout).toMatch(new RegExp(`^${path}: the config is valid \\(\\d+ source\\(s\\), \\d+ sink\\(s\\)\\), but the environment is not ready \\(1 problem\\(s\\)\\)$`, "m"));
      expect(r.code).toBe(69);
    });
  }

  test("JSON: duplicate keys and syntax errors with line and column, and what YAML would allow but JSON does not", async () => {
    const json = (name: string, text: string) => validate(configFile(name, text));
    const duplicate = await json("dup.json", `{\n  "data_dir": "${dir}/data",\n  "data_dir": "${dir}/other"\n}\n`);
    expect([duplicate.code, duplicate.stderr]).toEqual([78, `${dir}/dup.json:3:3: duplicate key "data_dir"\n`]);
    const unclosed = await json("unclosed.json", `{\n  "data_dir": "${dir}/data",\n  "sources": {\n`);
    expect(unclosed.stderr).toMatch(new RegExp(`^${dir}/unclosed\\.json:4:1: invalid JSON: `));
    const comma = await json("comma.json", `{ "data_dir": "${dir}/data", }`);
    expect([comma.code, comma.stderr]).toEqual([78, `${dir}/comma.json: invalid JSON: Property name must be a string literal\n`]);
  });

  test("every problem in one run: unset variables, the schema and the environment together", async () => {
    const text = GOOD.replace(`${dir}/data`, "${NAGARE_NOT_SET_ANYWHERE}")
      .replace("start_at: head", "start_at: head, strat_at: tail")
      .replace("sinks:", "  other: { type: journald, journalctl: journalctlx }\nsinks:")
      .replace("inputs: [journal]", "inputs: [journal, other]");
    const r = await validate(configFile("everything.yaml", `${text}buffer: { max_bytes: lots }\n`));
    expect(r.stderr.trim().split("\n").sort()).toEqual([
      "buffer.max_bytes: expected a size such as 1048576 or \"64MiB\", got \"lots\"",
      "data_dir: environment variable NAGARE_NOT_SET_ANYWHERE is not set (use ${NAGARE_NOT_SET_ANYWHERE:-default} for a default)",
      "sources.journal.strat_at: unknown key (did you mean \"start_at\"?)",
      "sources.other.journalctl: program journalctlx not found on PATH",
    ]);
    expect(r.stdout).toBe("");
    expect(r.code).toBe(78);
  });

  test("`run` refuses a wrong config with the same lines as `validate`", async () => {
    const path = configFile("run-refused.yaml", `${GOOD.replace(`${dir}/data`, "${NAGARE_NOT_SET_ANYWHERE}")}shutdown_timeout: soon\n`);
    const checked = await validate(path);
    const run = await runCli(["run", "-c", path]);
    expect(checked.stderr.trim().split("\n")).toHaveLength(2);
    expect(run.stderr).toBe(checked.stderr);
    expect([run.code, checked.code]).toEqual([78, 78]);
  });

  test("--connect: an unreachable destination is the environment's problem (69), and the summary says so", async () => {
    const path = configFile("connect.yaml", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:1"], topic: logs }\n`);
    const r = await runCli(["validate", "--connect", "-c", path]);
    expect(r.stderr).toBe("sinks.kafka: broker 127.0.0.1:1: UNREACHABLE (ECONNREFUSED)\n");
    expect(r.stdout).toBe(`${path}: the config is valid (1 source(s), 2 sink(s)), but the environment is not ready (1 problem(s))\n`);
    expect(r.code).toBe(69);
  });

  test("an unreadable config file is refused with its path", async () => {
    const r = await validate(join(dir, "does-not-exist.yaml"));
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/does-not-exist\.yaml: cannot read the config file \(ENOENT\)/);
  });

  test("a sink directory this user may not write to: exit 69", async () => {
    const root = mkdtempSync(join(tmpdir(), "nagare-validate-unwritable-"));
    try {
      mkdirSync(join(root, "data"));
      mkdirSync(join(root, "logs"), { mode: 0o755 });
      chmodSync(root, 0o755);
      chmodSync(join(root, "data"), 0o777);
      const config = join(root, "unwritable.yaml");
      writeFileSync(config, GOOD.replace(`${dir}/data`, `${root}/data`).replace(`directory: ${dir}`, "file: /dev/null").replace(`${dir}/out.jsonl`, `${root}/logs/out.jsonl`));
      chmodSync(config, 0o644);
      const r = await runCli(["validate", "-c", config], {}, ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--", ...CLI]);
      expect(r.stderr).toBe(`sinks.out.path: cannot write to ${root}/logs (EACCES)\n`);
      expect(r.code).toBe(69);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test("container folders are judged with the agent's capabilities: readable with CAP_DAC_READ_SEARCH, refused without", async () => {
    // The installed unit runs as a plain user with CAP_DAC_READ_SEARCH; access(2) ignores capabilities, so a
    // check through it would call /var/lib/docker (0710 root) unreadable and hide the docker source.
    const root = mkdtempSync(join(tmpdir(), "nagare-validate-docker-"));
    try {
      mkdirSync(join(root, "containers"), { mode: 0o700 });
      mkdirSync(join(root, "data"));
      chmodSync(root, 0o755);
      chmodSync(join(root, "data"), 0o777);
      const config = join(root, "docker.yaml");
      writeFileSync(config, `
data_dir: ${root}/data
sources:
  containers: { type: docker, include: ["${root}/containers/*/*-json.log"] }
sinks:
  out: { type: file, inputs: [containers], path: ${root}/data/out.jsonl }
`);
      chmodSync(config, 0o644);
      const asNobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"];
      const withCap = await runCli(["validate", "-c", config], {}, [...asNobody, "--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search", "--", ...CLI]);
      expect(withCap.stderr).toBe("");
      expect(withCap.code).toBe(0);
      const without = await runCli(["validate", "-c", config], {}, [...asNobody, "--", ...CLI]);
      expect(without.code).toBe(69);
      expect(without.stderr).toContain(`sources.containers.include[0]: cannot read the directory ${root}/containers (EACCES)`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
