/**
 * The API token that authorises changes over the HTTP API (POST /reload): 32 random bytes in hex, in
 * `<data_dir>/api.token`, mode 0600, owned by the agent's user, so that exactly the users who may read the
 * agent's state (root, the agent's user) may also make it reload. A valid token file is kept across restarts, so
 * a script that read it once keeps working; anything else in its place is replaced.
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, lstatSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { NagareError } from "../core/errors.ts";
import type { ApiAuth } from "./api.ts";

const TOKEN = /^[0-9a-f]{64}$/;

export function apiTokenFile(dataDir: string): string {
  return join(dataDir, "api.token");
}

/** The token from the data dir, or a new one written there. Throws CHECKPOINT_IO when it cannot be written. */
export function loadOrCreateApiToken(dataDir: string): ApiAuth {
  const tokenFile = apiTokenFile(dataDir);
  const kept = usableToken(tokenFile);
  if (kept !== undefined) return { token: kept, tokenFile };
  const token = randomBytes(32).toString("hex");
  const temp = `${tokenFile}.tmp-${process.pid}`;
  try {
    rmSync(temp, { force: true });
    const fd = openSync(temp, "wx", 0o600);
    try {
      writeSync(fd, `${token}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, tokenFile);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new NagareError("CHECKPOINT_IO", `cannot write the API token file ${tokenFile}`, { cause: err });
  }
  return { token, tokenFile };
}

function usableToken(path: string): string | undefined {
  try {
    const stat = lstatSync(path);
    const uid = process.getuid?.();
    if (!stat.isFile() || (stat.mode & 0o077) !== 0 || (uid !== undefined && stat.uid !== uid)) return undefined;
    const token = readFileSync(path, "utf8").trim();
    return TOKEN.test(token) ? token : undefined;
  } catch {
    return undefined;
  }
}
