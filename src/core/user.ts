/** The user the agent runs as, for messages that tell the operator whom to grant access. */
import { readFileSync } from "node:fs";

/**
 * Its name from /etc/passwd (Bun's os.userInfo() answers "unknown"); a uid without an entry there (a container,
 * a directory service) is named by number.
 */
export function agentUser(): string {
  const uid = process.getuid?.();
  if (uid === undefined) return "unknown";
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [name, , id] = line.split(":");
      if (id === String(uid) && name) return name;
    }
  } catch {
    // no readable passwd file: fall through to the number
  }
  return `uid ${uid}`;
}
