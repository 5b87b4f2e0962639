/** Every key name the schema knows, for "did you mean" hints on unknown keys. */
import { schemas } from "./schema.ts";
import { registryVersion } from "../registry.ts";

let cached: { version: number; names: Set<string> } | undefined;

export function schemaKeyNames(): Set<string> {
  if (cached?.version !== registryVersion()) {
    cached = { version: registryVersion(), names: new Set() };
    collect(schemas().config, cached.names, new Set());
  }
  return cached.names;
}

function collect(schema: unknown, names: Set<string>, seen: Set<unknown>): void {
  if (schema === null || typeof schema !== "object" || seen.has(schema)) return;
  seen.add(schema);
  const def = (schema as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
  if (def === undefined) return;
  const shape = def.shape as Record<string, unknown> | undefined;
  if (shape) {
    for (const [key, child] of Object.entries(shape)) {
      names.add(key);
      collect(child, names, seen);
    }
  }
  for (const key of ["innerType", "in", "out", "valueType", "element", "schema"]) collect(def[key], names, seen);
  for (const key of ["options", "items"]) {
    const list = def[key];
    if (Array.isArray(list)) for (const child of list) collect(child, names, seen);
  }
}
