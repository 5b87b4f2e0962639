/**
 * `${VAR}` and `${VAR:-default}` expansion in every string of a parsed config tree. Expansion runs after
 * parsing so a variable's value can never change the YAML structure. `$${` is a literal `${`.
 */

const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export interface ExpansionProblem {
  path: (string | number)[];
  message: string;
}

export function expandEnv(tree: unknown, env: Record<string, string | undefined>, problems: ExpansionProblem[]): unknown {
  return expandNode(tree, [], env, problems);
}

function expandNode(node: unknown, path: (string | number)[], env: Record<string, string | undefined>, problems: ExpansionProblem[]): unknown {
  if (typeof node === "string") return expandString(node, path, env, problems);
  if (Array.isArray(node)) return node.map((item, i) => expandNode(item, [...path, i], env, problems));
  if (node !== null && typeof node === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) out[key] = expandNode(value, [...path, key], env, problems);
    return out;
  }
  return node;
}

function expandString(text: string, path: (string | number)[], env: Record<string, string | undefined>, problems: ExpansionProblem[]): string {
  if (!text.includes("${")) return text;
  return text.replace(REFERENCE, (whole, name: string | undefined, fallback: string | undefined) => {
    if (whole === "$${") return "${";
    const value = env[name as string];
    if (value !== undefined && value !== "") return value;
    if (fallback !== undefined) return fallback;
    if (value === undefined) problems.push({ path, message: `environment variable ${name} is not set (use \${${name}:-default} for a default)` });
    return "";
  });
}
