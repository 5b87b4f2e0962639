/**
 * Builds the single self-contained binary dist/nagare, or the file named by the first argument (no Bun or Node
 * needed where it runs).
 *
 * One plugin: @platformatic/wasm-utils reads its .wasm file from disk next to its module, which does not exist
 * inside a compiled binary (ENOENT under /$bunfs); its "bundled" entry carries the same WebAssembly inline, so
 * the binary resolves the package to that entry.
 */
import { join, resolve } from "node:path";
import type { BunPlugin } from "bun";

const ROOT = join(import.meta.dir, "..");

const inlineWasm: BunPlugin = {
  name: "wasm-utils-bundled",
  setup(build) {
    build.onResolve({ filter: /^@platformatic\/wasm-utils$/ }, (args) => ({
      path: Bun.resolveSync("@platformatic/wasm-utils/bundled", args.resolveDir || ROOT),
    }));
  },
};

const result = await Bun.build({
  entrypoints: [join(ROOT, "src", "cli.ts")],
  compile: { outfile: resolve(process.argv[2] ?? join(ROOT, "dist", "nagare")) },
  minify: true,
  sourcemap: "inline",
  plugins: [inlineWasm],
});
if (!result.success) {
  for (const message of result.logs) console.error(message);
  process.exit(1);
}
