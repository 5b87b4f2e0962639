/**
 * The component registry: a type is declared by the descriptor in its folder and listed in one registry, so a
 * new type needs nothing else (a sink defined in this file is validated, described by the JSON Schema, checked
 * against the machine and receives records through a real pipeline); and the import rules that keep it so:
 * components never import the config assembly or the registry, core imports neither, no folders import each
 * other in a cycle, and commands load only what they need.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { z } from "zod";
import { buildPipeline } from "../src/agent.ts";
import { inputs } from "../src/config/blocks/types.ts";
import { environmentProblems } from "../src/config/environment.ts";
import { configJsonSchema, type JsonSchema } from "../src/config/json-schema.ts";
import { loadConfigText } from "../src/config/load.ts";
import type { Sink } from "../src/core/component.ts";
import { defineSink } from "../src/core/descriptor.ts";
import type { Delivery } from "../src/core/delivery.ts";
import { Logger } from "../src/observe/log.ts";
import { Metrics } from "../src/observe/metrics.ts";
import { loadImplementations, register, sinkDescriptors, sourceDescriptors } from "../src/registry.ts";
import { exportText, sequenceEntries } from "./support/journal.ts";
import { ROOT } from "./support/agent.ts";
import { range } from "./support/config.ts";
import { tempDir, waitFor } from "./support/util.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe("a component type defined outside src, registered alone", () => {
  /** Everything it received, in order: what a destination would hold. */
  const received: string[] = [];

  class MemorySink implements Sink {
    readonly type = "test_sink";
    readonly maxInFlight = 1;
    constructor(
      readonly name: string,
      private readonly label: string,
    ) {}

    async send(delivery: Delivery) {
      for (const record of delivery.batch.records) received.push(`${this.label}:${String(record.fields.SEQ)}`);
      return { status: "delivered" as const };
    }

    async close(): Promise<void> {}
  }

  const testSink = defineSink({
    kind: "sink",
    type: "test_sink",
    schema: z
      .strictObject({
        type: z.literal("test_sink"),
        inputs,
        label: z.string().min(1).describe("Prefix of every record this sink keeps."),
        needs: z.string().optional().describe("A path that must exist on this machine."),
      })
      .describe("Keeps records in memory (this test only)."),
    async implementation() {
      return { build: (name, config) => new MemorySink(name, config.label) };
    },
    environment: (config, at) => (config.needs === undefined || config.needs.startsWith(tmp.path) ? [] : [`${at}.needs: ${config.needs} is not here`]),
  });
  const unregister = register(testSink);
  afterAll(unregister);

  const configText = (dir: string, sink: string) => `
data_dir: ${join(dir, "data")}
api: false
buffer: { batch_timeout: 20ms }
sources:
  journal: { type: journald, file: ${join(dir, "journal.export")}, start_at: head }
sinks:
  mem: ${sink}
`;

  test("a config naming it validates, and its own schema judges its keys", () => {
    const ok = loadConfigText(configText(tmp.path, "{ type: test_sink, inputs: [journal], label: L }"), "ok.yaml");
    expect(ok).toMatchObject({ ok: true, config: { sinks: { mem: { type: "test_sink", label: "L" } } } });
    const missing = loadConfigText(configText(tmp.path, "{ type: test_sink, inputs: [journal], lable: L }"), "typo.yaml");
    expect(missing.ok).toBe(false);
    expect(!missing.ok && missing.problems.sort()).toEqual(["sinks.mem.label: required", 'sinks.mem.lable: unknown key (did you mean "label"?)']);
    const unknown = loadConfigText(configText(tmp.path, "{ type: test_sinc, inputs: [journal] }"), "unknown.yaml");
    expect(unknown.ok).toBe(false);
    expect(!unknown.ok && unknown.problems[0]).toContain('"test_sink"');
  });

  test("its environment check runs in validate's", () => {
    const loaded = loadConfigText(configText(tmp.path, "{ type: test_sink, inputs: [journal], label: L, needs: /elsewhere }"), "env.yaml");
    if (!loaded.ok) throw new Error(loaded.problems.join("; "));
    expect(environmentProblems(loaded.config)).toContain("sinks.mem.needs: /elsewhere is not here");
  });

  test("the JSON Schema and the help list it", () => {
    const branches = (((configJsonSchema().properties as Record<string, JsonSchema>).sinks!.additionalProperties as JsonSchema).oneOf as JsonSchema[]);
    const branch = branches.find((b) => ((b.properties as Record<string, JsonSchema>).type as JsonSchema).const === "test_sink");
    expect(branch).toMatchObject({ description: "Keeps records in memory (this test only).", required: ["type", "inputs", "label"], additionalProperties: false });
    expect(sinkDescriptors().map((d) => d.type)).toContain("test_sink");
  });

  test("records read by a built-in source reach it through a real pipeline", async () => {
    writeFileSync(join(tmp.path, "journal.export"), exportText(sequenceEntries(1, 300)));
    const loaded = loadConfigText(configText(tmp.path, "{ type: test_sink, inputs: [journal], label: L }"), "run.yaml");
    if (!loaded.ok) throw new Error(loaded.problems.join("; "));
    await loadImplementations();
    const pipeline = buildPipeline(loaded.config, new Logger("error"), new Metrics());
    pipeline.start();
    try {
      await waitFor("300 records in the test sink", () => received.length >= 300);
      await waitFor("the file source to finish", () => pipeline.exhausted);
    } finally {
      await pipeline.stop(5000);
    }
    expect(received).toEqual(range(1, 300).map((seq) => `L:${seq}`));
  });

  test("once removed, the type is unknown again", () => {
    const text = configText(tmp.path, "{ type: test_sink_2, inputs: [journal], label: L }");
    const unregisterAgain = register({ ...testSink, type: "test_sink_2", schema: testSink.schema.extend({ type: z.literal("test_sink_2") }) } as never);
    expect(loadConfigText(text, "known.yaml").ok).toBe(true);
    unregisterAgain();
    expect(loadConfigText(text, "gone.yaml").ok).toBe(false);
  });
});

describe("every built-in type", () => {
  test("has its descriptor in its own folder, named by its type", () => {
    for (const d of [...sourceDescriptors(), ...sinkDescriptors()].filter((d) => !d.type.startsWith("test_"))) {
      const folder = join(ROOT, "src", d.kind === "source" ? "sources" : "sinks", d.type);
      expect(readdirSync(folder)).toContain("descriptor.ts");
    }
  });

  test("saves a position whose schema the descriptor names, when it is a source", () => {
    for (const d of sourceDescriptors().filter((d) => !d.type.startsWith("test_"))) expect(d.position).toBeDefined();
  });
});

/** Every relative import of every file under src/ (static, re-exports and dynamic), as [from, to] paths. */
function importsOfSrc(): [string, string][] {
  const src = join(ROOT, "src");
  const pattern = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
  const edges: [string, string][] = [];
  for (const file of new Bun.Glob("**/*.ts").scanSync({ cwd: src })) {
    for (const match of readFileSync(join(src, file), "utf8").matchAll(pattern)) {
      const spec = match[1] ?? match[2]!;
      if (spec.startsWith(".")) edges.push([file, relative(src, resolve(dirname(join(src, file)), spec))]);
    }
  }
  return edges;
}

/** Files of core that import nothing (the error model, small parsers): anything may use them. */
const coreLeaves = new Set(
  (() => {
    const importing = new Set(importsOfSrc().map(([from]) => from));
    return readdirSync(join(import.meta.dir, "..", "src", "core")).map((f) => `core/${f}`).filter((f) => !importing.has(f));
  })(),
);

/**
 * The unit a file belongs to for the layering rules: a component's folder, the config building blocks, the
 * config assembly, core, observe, the registry, the command line (src/*.ts). A core file that imports nothing
 * (the error model, core/errors.ts, among them) is a unit of its own: everything may use it without a cycle.
 */
function unitOf(path: string): string {
  const parts = path.split("/");
  if (parts[0] === "sources" || parts[0] === "sinks") return `${parts[0]}/${parts[1]}`;
  if (parts[0] === "config" && parts[1] === "blocks") return "config/blocks";
  if (coreLeaves.has(path)) return path;
  if (parts.length === 1) return path === "registry.ts" ? "registry" : "cli";
  return parts[0]!;
}

const isComponent = (unit: string) => unit.startsWith("sources/") || unit.startsWith("sinks/");

describe("imports", () => {
  const edges = importsOfSrc().map(([from, to]) => ({ from, to, a: unitOf(from), b: unitOf(to) })).filter((e) => e.a !== e.b);
  const broken = (rule: (a: string, b: string) => boolean) => edges.filter((e) => rule(e.a, e.b)).map((e) => `${e.from} -> ${e.to}`);

  test("the scan sees the imports it judges", () => {
    expect(edges.some((e) => e.from === "registry.ts" && e.to === "sinks/kafka/descriptor.ts")).toBe(true);
    expect(edges.some((e) => e.from === "sinks/kafka/descriptor.ts" && e.to === "sinks/kafka/probe.ts")).toBe(false); // same folder
    expect(edges.some((e) => e.from === "sinks/kafka/descriptor.ts" && e.to === "config/blocks/tls.ts")).toBe(true);
  });

  test("a component imports no other component, no config assembly, no registry and no command", () => {
    expect(broken((a, b) => isComponent(a) && (isComponent(b) || b === "config" || b === "registry" || b === "cli"))).toEqual([]);
  });

  test("core and the config building blocks import no component, no assembly, no registry", () => {
    expect(broken((a, b) => (a === "core" || a === "config/blocks") && (isComponent(b) || b === "config" || b === "registry" || b === "cli"))).toEqual([]);
  });

  test("the config assembly knows components only through the registry", () => {
    expect(broken((a, b) => a === "config" && isComponent(b))).toEqual([]);
  });

  test("the error model imports nothing", () => {
    expect(importsOfSrc().filter(([from]) => from === "core/errors.ts")).toEqual([]);
  });

  test("no folders import each other in a cycle", () => {
    const graph = new Map<string, Set<string>>();
    for (const { a, b } of edges) graph.set(a, (graph.get(a) ?? new Set()).add(b));
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const visit = (unit: string, path: string[]) => {
      if (state.get(unit) === "done") return;
      if (state.get(unit) === "open") return void cycles.push([...path.slice(path.indexOf(unit)), unit].join(" -> "));
      state.set(unit, "open");
      for (const next of graph.get(unit) ?? []) visit(next, [...path, unit]);
      state.set(unit, "done");
    };
    for (const unit of graph.keys()) visit(unit, []);
    expect(cycles).toEqual([]);
  });
});

describe("commands load only what they need", () => {
  /** The src/ modules a command loaded, from a preload script that lists the module cache at exit. */
  async function loadedBy(args: string[]): Promise<string[]> {
    const preload = join(tmp.path, "list-modules.ts");
    writeFileSync(preload, `process.on("exit", () => console.error("MODULES " + JSON.stringify(Object.keys(require.cache))));\n`);
    const proc = Bun.spawn([join(ROOT, "node_modules", ".bin", "bun"), "--preload", preload, join(ROOT, "src", "cli.ts"), ...args], { stdout: "ignore", stderr: "pipe" });
    const stderr = await new Response(proc.stderr).text();
    await proc.exited;
    const line = stderr.split("\n").find((l) => l.startsWith("MODULES "));
    if (line === undefined) throw new Error(`no module list in: ${stderr}`);
    return (JSON.parse(line.slice("MODULES ".length)) as string[]).map((p) => relative(ROOT, p));
  }

  test("`version` loads no config, zod or agent", async () => {
    const loaded = await loadedBy(["version"]);
    expect(loaded.filter((p) => p.startsWith("src/")).sort()).toEqual(["src/cli.ts", "src/exit-codes.ts"]);
    expect(loaded.some((p) => p.includes("node_modules/zod/"))).toBe(false);
  });

  test("`validate` loads no sink or source implementation", async () => {
    const config = join(tmp.path, "validate.yaml");
    writeFileSync(config, `data_dir: ${tmp.path}\nsources:\n  j: { type: journald, file: /dev/null }\nsinks:\n  k: { type: kafka, inputs: [j], brokers: ["127.0.0.1:9"], topic: t }\n  f: { type: forward, inputs: [j], servers: [{ host: 127.0.0.1 }], tag: t }\n`);
    const loaded = (await loadedBy(["validate", "-c", config])).filter((p) => p.startsWith("src/sources/") || p.startsWith("src/sinks/"));
    expect(loaded.filter((p) => !/\/(config|descriptor|position)\.ts$/.test(p))).toEqual([]);
  });
});
