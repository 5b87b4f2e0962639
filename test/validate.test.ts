/** `nagare validate` on broken configs: one line per problem naming the key path, exit 78; a good one exits 0. */
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
    const r = await validate(join(import.meta.dir, "..", "examples", example), { NAGARE_DATA_DIR: `${dir}/ex`, NAGARE_OUT: `${dir}/ex.jsonl` });
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
    ["invalid YAML", "sources: [unclosed\n", /invalid YAML/],
    ["unset variable", GOOD.replace(`${dir}/data`, "${NAGARE_NOT_SET_ANYWHERE}"), /^data_dir: environment variable NAGARE_NOT_SET_ANYWHERE is not set/m],
    ["source read by no sink", `${GOOD.replace("sinks:", "  other: { type: journald }\nsinks:")}`, /^sources\.other: no sink reads this source/m],
    ["unreadable journal file", GOOD.replace(`directory: ${dir}`, `file: ${dir}/missing.export`), /^sources\.journal\.file: cannot read .*missing\.export \(ENOENT\)$/m],
    ["url and file together", GOOD.replace(`directory: ${dir}`, "url: http://127.0.0.1:19531, file: /x"), /^sources\.journal\.url: set either `url` or `file`, not both$/m],
    ["empty inputs", GOOD.replace("inputs: [journal]", "inputs: []"), /^sinks\.out\.inputs: needs at least 1 item/m],
    ["kafka sink with no brokers", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: [], topic: logs }\n`, /^sinks\.kafka\.brokers: needs at least 1 item/m],
    ["kafka acks: none", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:9092"], topic: logs, acks: none }\n`, /^sinks\.kafka\.acks: acks: none cannot gate a cursor/m],
    ["kafka bad template", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:9092"], topic: "logs-{{hostname}}" }\n`, /^sinks\.kafka\.topic: unknown placeholder \{\{hostname\}\}/m],
    ["kafka missing TLS file", `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:9093"], topic: logs, tls: { ca: ${dir}/missing-ca.pem } }\n`, /^sinks\.kafka\.tls\.ca: cannot read .*missing-ca\.pem \(ENOENT\)$/m],
    ["forward sink with no servers", `${GOOD}  fwd: { type: forward, inputs: [journal], servers: [], tag: logs }\n`, /^sinks\.fwd\.servers: needs at least 1 item/m],
    ["forward user without shared key", `${GOOD}  fwd: { type: forward, inputs: [journal], servers: [{ host: agg }], tag: logs, username: u, password: p }\n`, /^sinks\.fwd\.shared_key: user authentication needs shared_key/m],
    ["forward only standby servers", `${GOOD}  fwd: { type: forward, inputs: [journal], servers: [{ host: agg, standby: true }], tag: logs }\n`, /^sinks\.fwd\.servers: at least one server must not be standby/m],
    ["docker include under a file", `${GOOD.replace("sinks:", `  containers: { type: docker, include: ["/etc/passwd/*/*-json.log"] }\nsinks:`).replace("inputs: [journal]", "inputs: [journal, containers]")}`, /^sources\.containers\.include\[0\]: \/etc\/passwd is not a directory$/m],
    ["unwritable sink directory", GOOD.replace(`path: ${dir}/out.jsonl`, "path: /nonexistent-dir/out.jsonl"), /^sinks\.out\.path: cannot write to \/nonexistent-dir/m],
  ];

  for (const [what, text, expected] of broken) {
    test(`refuses: ${what}`, async () => {
      const r = await validate(configFile(`${what.replace(/\W+/g, "-")}.yaml`, text));
      expect(r.code).toBe(78);
      expect(r.stderr).toMatch(expected);
      for (const line of r.stderr.trim().split("\n")) expect(line).toMatch(/^[\w.\[\]-]+: |^\S+\.yaml: /);
    });
  }

  test("an unreadable config file is refused with its path", async () => {
    const r = await validate(join(dir, "does-not-exist.yaml"));
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/does-not-exist\.yaml: cannot read the config file \(ENOENT\)/);
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
      expect(without.code).toBe(78);
      expect(without.stderr).toContain(`sources.containers.include[0]: cannot read the directory ${root}/containers (EACCES)`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
