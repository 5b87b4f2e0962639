/**
 * The JSON Schema of the configuration (`nagare schema`) and the README reference generated from it: the
 * reference is current, every config shipped in the repository passes, the broken configs of validate.test.ts
 * that JSON Schema can express fail, and the hand-written patterns agree with the code they stand for.
 *
 * Ajv is the validator because it is the reference implementation editors' tooling and CI linters use for draft
 * 2020-12 (ajv/dist/2020), so "passes here" means "passes there"; ajv-formats supplies the `uri` format.
 */
import { describe, expect, spyOn, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { configJsonSchema, CONFIG_SCHEMA_ID, printSchema, type JsonSchema } from "../src/config/json-schema.ts";
import { expandEnv, type ExpansionProblem } from "../src/config/expand.ts";
import { parseConfigText, validateConfig } from "../src/config/load.ts";
import { embeddedDefault } from "../src/config/default.ts";
import { DURATION_PATTERN, parseDuration, parseSize, SIZE_PATTERN } from "../src/config/blocks/units.ts";
import { compileTemplate, TEMPLATE_PATTERN } from "../src/core/template.ts";
import { checkReadme } from "../scripts/gen-config-reference.ts";

const ROOT = join(import.meta.dir, "..");
const schema = configJsonSchema();
const ajv = new Ajv2020({ allErrors: true });
addFormats(ajv);
const validate = ajv.compile(schema);

/**
 * A config text as the agent sees it: parsed, then `${VAR:-default}` expanded with an environment holding only
 * the secrets that examples take from the environment with no default.
 */
function expanded(text: string, origin: string): unknown {
  const problems: ExpansionProblem[] = [];
  const parsed = parseConfigText(text, `${origin}.yaml`);
  if (!parsed.ok) throw new Error(parsed.problems.join("; "));
  const tree = expandEnv(parsed.tree, { FORWARD_SHARED_KEY: "example-shared-key" }, problems);
  if (problems.length > 0) throw new Error(`${origin}: ${problems.map((p) => p.message).join("; ")}`);
  return tree;
}

function errorsOf(tree: unknown): string[] {
  return validate(tree) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "(top)"} ${e.message ?? ""}`);
}

test("the README configuration reference is generated from the current schema", () => {
  expect(checkReadme()).toBeUndefined();
});

test("a stale reference is reported", () => {
  const dir = mkdtempSync(join(tmpdir(), "nagare-readme-"));
  try {
    const stale = join(dir, "README.md");
    writeFileSync(stale, readFileSync(join(ROOT, "README.md"), "utf8").replace("| `data_dir` |", "| `data_directory` |"));
    expect(checkReadme(stale)).toMatch(/configuration reference is out of date.*gen-config-reference\.ts/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("`nagare schema` prints the schema as JSON", () => {
  let written = "";
  const write = spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    written += String(chunk);
    return true;
  });
  try {
    printSchema();
  } finally {
    write.mockRestore();
  }
  expect(written.endsWith("}\n")).toBe(true);
  expect(JSON.parse(written)).toEqual(schema);
});

describe("shape", () => {
  test("draft 2020-12 with an $id", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(schema.$id).toBe(CONFIG_SCHEMA_ID);
  });

  test("every mapping with keys refuses unknown keys", () => {
    const open: string[] = [];
    walk(schema, "#", (node, at) => {
      if (node.type === "object" && node.properties !== undefined && node.additionalProperties !== false) open.push(at);
    });
    expect(open).toEqual([]);
  });

  test("sources and sinks are discriminated by `type`", () => {
    for (const record of ["sources", "sinks"]) {
      const branches = ((schema.properties as Record<string, JsonSchema>)[record]?.additionalProperties as JsonSchema).oneOf as JsonSchema[];
      for (const branch of branches) {
        expect(branch.required).toContain("type");
        expect(typeof ((branch.properties as Record<string, JsonSchema>).type as JsonSchema).const).toBe("string");
      }
    }
  });

  test("every default is valid for its own key", () => {
    const invalid: string[] = [];
    walk(schema, "#", (node, at) => {
      if (!("default" in node)) return;
      const { default: value, ...rest } = node;
      if (!ajv.validate({ ...rest, $defs: schema.$defs }, value)) invalid.push(`${at}: ${JSON.stringify(value)}`);
    });
    expect(invalid).toEqual([]);
  });
});

/** Every config in the repository: standalone files, ConfigMaps' `nagare.yaml`, cloud-init's written files. */
function repositoryConfigs(): [string, string][] {
  const found: [string, string][] = [
    ["src/config/default.ts (embedded default, no Docker)", embeddedDefault(join(tmpdir(), "nagare-no-such-dir"))],
    ["src/config/default.ts (embedded default with Docker)", embeddedDefault(tmpdir())],
  ];
  const files = [
    ...readdirSync(join(ROOT, "examples")).filter((f) => /\.(ya?ml|json)$/.test(f)).map((f) => `examples/${f}`),
    ...readdirSync(join(ROOT, "deploy/kubernetes")).filter((f) => /\.ya?ml$/.test(f)).map((f) => `deploy/kubernetes/${f}`),
    ...readdirSync(join(ROOT, "deploy/ami")).filter((f) => /\.ya?ml$/.test(f)).map((f) => `deploy/ami/${f}`),
  ];
  for (const file of files) {
    const text = readFileSync(join(ROOT, file), "utf8");
    const parsed: unknown = Bun.YAML.parse(text);
    const docs = (Array.isArray(parsed) ? parsed : [parsed]) as Record<string, unknown>[]; // several YAML documents
    for (const doc of docs) {
      if (doc !== null && "sources" in doc) found.push([file, text]);
      const configMap = (doc?.data as Record<string, unknown> | undefined)?.["nagare.yaml"];
      if (doc?.kind === "ConfigMap" && typeof configMap === "string") found.push([`${file} (ConfigMap)`, configMap]);
      for (const written of (doc?.write_files ?? []) as { path?: string; content?: string }[]) {
        if (written.path?.endsWith("nagare.yaml") && written.content) found.push([`${file} (${written.path})`, written.content]);
      }
    }
  }
  return found;
}

describe("configs in the repository", () => {
  const configs = repositoryConfigs();

  test("all the expected ones are found", () => {
    const origins = configs.map(([origin]) => origin);
    for (const expected of [
      "examples/journal-to-file.yaml",
      "examples/journal-to-kafka.yaml",
      "deploy/kubernetes/nagare.yaml",
      "deploy/kubernetes/daemonset.yaml (ConfigMap)",
      "deploy/kubernetes/sidecar.yaml (ConfigMap)",
      "deploy/ami/nagare.yaml",
      "deploy/ami/cloud-init.yaml (/etc/nagare/nagare.yaml)",
    ]) {
      expect(origins).toContain(expected);
    }
  });

  test("the embedded default adds the Docker container logs only where their directory can be read", () => {
    const plain = validateConfig(expanded(embeddedDefault(join(tmpdir(), "nagare-no-such-dir")), "embedded"));
    const docker = validateConfig(expanded(embeddedDefault(tmpdir()), "embedded"));
    if (!plain.ok || !docker.ok) throw new Error("the embedded default does not validate");
    expect(Object.keys(plain.config.sources)).toEqual(["journal"]);
    expect(docker.config.sources.containers).toMatchObject({ type: "docker", include: [`${tmpdir()}/*/*-json.log`], start_at: "tail" });
    expect(docker.config.sinks.stdout!.inputs).toEqual(["journal", "containers"]);
  });

  test.each(configs)("%s passes the JSON Schema (and the zod schema)", (origin, text) => {
    const tree = expanded(text, origin);
    expect(errorsOf(tree)).toEqual([]);
    expect(validateConfig(tree)).toMatchObject({ ok: true });
  });
});

describe("include", () => {
  const GLOBALS = "data_dir: /tmp/nagare/data\ninclude: [\"conf.d/*.yaml\"]\n";

  test("with fragments, the main file may hold only global settings", () => {
    const tree = expanded(GLOBALS, "globals only");
    expect(errorsOf(tree)).toEqual([]);
    expect(validateConfig(tree)).toMatchObject({ ok: true, config: { include: ["conf.d/*.yaml"], sources: {}, sinks: {} } });
  });

  test("with fragments, a source of the main file may be left to the fragments' sinks", () => {
    const tree = expanded(`${GLOBALS}sources:\n  journal: { type: journald }\n`, "shared source");
    expect(errorsOf(tree)).toEqual([]);
    expect(validateConfig(tree).ok).toBe(true);
  });

  test("without fragments, the file needs a source and a sink", () => {
    const tree = expanded("data_dir: /tmp/nagare/data\n", "nothing");
    expect(validateConfig(tree)).toEqual({ ok: false, problems: ["sources: at least one source is needed", "sinks: at least one sink is needed"] });
    expect(errorsOf(tree).sort()).toEqual(["(top) must have required property 'sinks'", "(top) must have required property 'sources'", "(top) must match \"else\" schema"]);
  });

  test("`include` is a list of patterns", () => {
    const tree = expanded(`include: conf.d/*.yaml\n`, "a string");
    expect(validateConfig(tree)).toMatchObject({ ok: false, problems: ["include: expected array (got a string)"] });
    expect(errorsOf(tree)).toContain("/include must be array");
  });
});

describe("broken configs are refused", () => {
  // The GOOD config and the cases of test/validate.test.ts, with a fixed directory.
  const GOOD = `
data_dir: /tmp/nagare/data
sources:
  journal: { type: journald, directory: /tmp/nagare, start_at: head }
sinks:
  out: { type: file, inputs: [journal], path: /tmp/nagare/out.jsonl }
`;
  const KAFKA = `${GOOD}  kafka: { type: kafka, inputs: [journal], brokers: ["127.0.0.1:9092"], topic: logs }\n`;

  // [case, config text, JSON Pointer of an error ajv must report]. Left out, because JSON Schema cannot say
  // them: an unknown input and a source read by no sink (references between keys), an unreadable journal file,
  // a missing TLS file and an unwritable sink directory (the file system), invalid YAML (never reaches a schema)
  // and an unset variable (expansion, before any schema).
  const broken: [string, string, string][] = [
    ["typo'd key", GOOD.replace("start_at: head", "strat_at: head"), "/sources/journal"],
    ["typo'd top-level key", `${GOOD}\ncheckpoint_intervall: 1s\n`, ""],
    ["wrong type", `${GOOD}\nbuffer: { batch_max_records: many }\n`, "/buffer/batch_max_records"],
    ["bad size string", `${GOOD}\nbuffer: { max_bytes: 64MB/s }\n`, "/buffer/max_bytes"],
    ["negative size", `${GOOD}\nbuffer: { max_bytes: -1 }\n`, "/buffer/max_bytes"],
    ["bad duration", `${GOOD}\nshutdown_timeout: soon\n`, "/shutdown_timeout"],
    ["missing sink field", GOOD.replace(", path: /tmp/nagare/out.jsonl", ""), "/sinks/out"],
    ["unknown sink type", GOOD.replace("type: file", "type: kafak"), "/sinks/out/type"],
    ["bad enum", GOOD.replace("start_at: head", "start_at: begin"), "/sources/journal/start_at"],
    ["url and file together", GOOD.replace("directory: /tmp/nagare", "url: http://127.0.0.1:19531, file: /x"), "/sources/journal"],
    ["directory with url", GOOD.replace("start_at: head", "start_at: head, url: http://127.0.0.1:19531"), "/sources/journal"],
    ["url that is not http", GOOD.replace("directory: /tmp/nagare", "url: ftp://127.0.0.1:19531"), "/sources/journal/url"],
    ["no sources", GOOD.replace(/sources:\n.*\n/, "sources: {}\n"), "/sources"],
    ["empty inputs", GOOD.replace("inputs: [journal]", "inputs: []"), "/sinks/out/inputs"],
    ["kafka sink with no brokers", KAFKA.replace('["127.0.0.1:9092"]', "[]"), "/sinks/kafka/brokers"],
    ["kafka acks: none", KAFKA.replace("topic: logs", "topic: logs, acks: none"), "/sinks/kafka/acks"],
    ["kafka bad template", KAFKA.replace("topic: logs", 'topic: "logs-{{hostname}}"'), "/sinks/kafka/topic"],
    ["kafka cert without key", KAFKA.replace("topic: logs", "topic: logs, tls: { cert: /c.pem }"), "/sinks/kafka/tls"],
  ];

  test.each(broken)("%s", (what, text, pointer) => {
    const tree = expanded(text, what);
    expect(validateConfig(tree).ok).toBe(false); // the case really is broken for the agent
    const errors = errorsOf(tree);
    expect(errors.some((e) => e.startsWith(`${pointer || "(top)"} `))).toBe(true);
  });
});

describe("patterns agree with the code they describe", () => {
  const NUMBERS = ["0", "12", " 3 ", "1.5", "1.", ".5", "-1", "1e3", "1_000", "", " ", "1 2"];
  const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

  /** Every unit of up to three letters, so a unit the code accepts but the pattern misses (or the reverse) shows. */
  function units(): string[] {
    const out = [""];
    for (const a of LETTERS) {
      out.push(a);
      for (const b of LETTERS) {
        out.push(a + b);
        for (const c of LETTERS) out.push(a + b + c);
      }
    }
    return out;
  }

  test("sizes and durations", () => {
    const size = new RegExp(SIZE_PATTERN, "u");
    const duration = new RegExp(DURATION_PATTERN, "u");
    const disagree: string[] = [];
    for (const unit of units()) {
      for (const n of unit.length <= 1 ? NUMBERS : ["7"]) {
        for (const text of [`${n}${unit}`, `${n} ${unit} `]) {
          if (size.test(text) !== (parseSize(text) !== undefined)) disagree.push(`size ${JSON.stringify(text)}`);
          if (duration.test(text) !== (parseDuration(text) !== undefined)) disagree.push(`duration ${JSON.stringify(text)}`);
        }
      }
    }
    expect(disagree).toEqual([]);
  });

  test("templates", () => {
    const pattern = new RegExp(TEMPLATE_PATTERN, "u");
    const pieces = ["{", "}", "{{", "}}", "source", "stream", "field.", "_HOSTNAME", "x", " ", ".", "-", "{{source}}", "{{ stream }}", "{{field.A}}", "{{bad}}"];
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31; // deterministic, so failures repeat
    const disagree: string[] = [];
    const samples = ["{{{source}}", "{{{source}}}", "{{{{source}}", "{{ field.a }}", "{{field.}}", "a}b{c", "{{source}}}}"];
    for (let i = 0; i < 20_000; i++) samples.push(Array.from({ length: 1 + Math.floor(next() * 8) }, () => pieces[Math.floor(next() * pieces.length)]).join(""));
    for (const text of samples) {
      if (pattern.test(text) !== (typeof compileTemplate(text) !== "string")) disagree.push(JSON.stringify(text));
    }
    expect(disagree).toEqual([]);
  });
});

function walk(node: unknown, at: string, visit: (node: JsonSchema, at: string) => void): void {
  if (node === null || typeof node !== "object") return;
  if (!Array.isArray(node)) visit(node as JsonSchema, at);
  for (const [key, child] of Object.entries(node)) walk(child, `${at}/${key}`, visit);
}
