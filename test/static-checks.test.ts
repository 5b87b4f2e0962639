/**
 * The CI guards, run with the suite so `.ci/run` fails on them: the type check, no import by an absolute path
 * (it resolves only on the machine that has that path), and knip's unused files, exports and dependencies
 * (configured in knip.json).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "./support/agent.ts";

const SOURCE_DIRS = ["src", "test", "scripts"];
const SOURCE_FILE = /\.(?:[cm]?ts|[cm]?js|tsx|jsx)$/;
// A module specifier that starts with a slash after from, import, import( or require(, in any of the three quotes.
const ABSOLUTE_IMPORT = /(?:\bfrom|\bimport|\brequire\s*\(|\bimport\s*\()\s*["'`]\//g;

/** `file:line: text` for every import by an absolute path in `text`. */
function absoluteImports(file: string, text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(ABSOLUTE_IMPORT)) {
    const line = text.slice(0, m.index).split("\n").length;
    found.push(`${file}:${line}: ${text.split("\n")[line - 1]?.trim()}`);
  }
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && SOURCE_FILE.test(e.name) && !e.parentPath.includes("node_modules"))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** Runs a tool in the repository; its output is returned whole so a failing assertion shows it. */
async function run(cmd: string[]): Promise<{ exitCode: number; output: string }> {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, output: stdout + stderr };
}

describe("static checks", () => {
  test("the type check passes: tsc --noEmit -p .", async () => {
    const r = await run([join(ROOT, "node_modules", ".bin", "tsc"), "--noEmit", "-p", "."]);
    expect(r).toEqual({ exitCode: 0, output: "" });
  }, 120_000);

  test("no import in src/, test/ or scripts/ uses an absolute path", () => {
    const found = SOURCE_DIRS.flatMap(sourceFiles).flatMap((f) => absoluteImports(f, readFileSync(join(ROOT, f), "utf8")));
    expect(found).toEqual([]);
  });

  test("the absolute-import check finds every form and passes relative and package imports", () => {
    // Built from parts so that this file does not hold what it looks for.
    const q = '"';
    const abs = `${q}/home/someone/nagare/src/core/record.ts${q}`;
    const text = [
      `import type { FieldValue } from ${abs};`,
      `import {\n  a,\n} from ${abs};`,
      `import ${abs};`,
      `const m = await import(${abs});`,
      `const r = require( ${abs.replaceAll(q, "'")} );`,
      `const t = await import(\`/tmp/x.ts\`);`,
      `import { ok } from "./support/util.ts";`,
      `import { alsoOk } from "../../core/record.ts";`,
      `import { join } from "node:path";`,
      `const path = "/lib/systemd/systemd-journal-remote";`,
    ].join("\n");
    expect(absoluteImports("x.ts", text).map((f) => f.split(":").slice(0, 2).join(":"))).toEqual([
      "x.ts:1",
      "x.ts:4",
      "x.ts:5",
      "x.ts:6",
      "x.ts:7",
      "x.ts:8",
    ]);
  });

  test("knip finds no unused file, export, dependency or binary", async () => {
    // knip runs on Node, which every machine .ci/run supports has. A configuration hint (an ignore in knip.json
    // that is no longer needed, say) fails too, so the ignores stay few.
    const r = await run(["node", join(ROOT, "node_modules", "knip", "bin", "knip.js"), "--no-progress", "--treat-config-hints-as-errors"]);
    expect(r).toEqual({ exitCode: 0, output: expect.any(String) });
  }, 120_000);
});
