/** Which config `run`, `validate` and `checkpoints` use, and how each reads it. */
import { existsSync } from "node:fs";
import { DEFAULT_CONFIG_PATH, embeddedDefault } from "./default.ts";
import { assemble, loadConfigFile, type Assembly, type Fragment } from "./fragments.ts";
import { loadConfigText, type LoadResult } from "./load.ts";

/** Where a config comes from; a reload passes what ran of each fragment, to keep it when its file broke. */
export interface ConfigOrigin {
  origin: string;
  load(previous?: ReadonlyMap<string, Fragment>): LoadResult;
  /** Every file checked, each with its own problems (`validate`). */
  check(): Assembly;
}

/** -c FILE, else /etc/nagare/nagare.yaml, else the embedded default. */
export function resolveConfig(path: string | undefined): ConfigOrigin {
  const file = path ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  if (file !== undefined) return { origin: file, load: (previous) => loadConfigFile(file, process.env, previous), check: () => assemble(file) };
  return { origin: "(embedded default)", load: () => loadConfigText(embeddedDefault(), "embedded.yaml"), check: () => assemble("embedded.yaml", process.env, undefined, embeddedDefault()) };
}
