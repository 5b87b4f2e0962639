/** The config of `run` and `checkpoints`: loaded, or its problems on stderr and exit 78. */
import type { Config } from "./config/schema.ts";
import { resolveConfig, type ConfigOrigin } from "./config/origin.ts";
import { EX_CONFIG } from "./exit-codes.ts";

export function loadOrExit(path: string | undefined): { config: Config; origin: ConfigOrigin } {
  const origin = resolveConfig(path);
  const result = origin.load();
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`${problem}\n`);
    process.exit(EX_CONFIG);
  }
  return { config: result.config, origin };
}
