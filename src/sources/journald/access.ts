/**
 * journalctl's own words about the agent's access to the journal, turned into problems an operator can fix.
 * Observed with systemd 252 (LC_ALL=C) as a user without access (setpriv --reuid nobody):
 *
 *   a directory it may not open (-D)      "Failed to open DIR: Permission denied"                        exit 1
 *   journal files it may not read         "No journal files were opened due to insufficient permissions." exit 1
 *   some files readable, the rest not     "Hint: You are currently not seeing messages from other users and the
 *                                          system." — only without -o export (so the probe sees it), exit 0:
 *                                          it shows the user its own entries and nothing else
 *   a directory that does not exist (-D)  "Failed to open DIR: No such file or directory"                 exit 1
 *   no journal files at all               "No journal files were found." and "-- No entries --"           exit 1;
 *                                          with -o export --follow it says nothing and waits
 *
 * A user outside `systemd-journal` on a host whose journal files are 0640 root:systemd-journal sees either the
 * second line (no readable file) or the hint (its own user-UID.journal is readable through an ACL).
 */
import type { SourceProblem } from "../../core/component.ts";
import { describeError } from "../../core/errors.ts";
import { agentUser } from "../../core/user.ts";
import type { JournalProbe } from "./readers.ts";

const DENIED_DIR = /Failed to open (.+?): Permission denied/;
const DENIED_FILES = /No journal files were opened due to insufficient permissions/;
const MISSING_DIR = /Failed to open (.+?): No such file or directory/;
const PARTIAL = /You are currently not seeing messages from other users and the system/;
const NO_FILES = /No journal files were found/;
const EMPTY = /-- No entries --/;

/** What the operator does when the agent's user may not read the journal. */
function grantAccess(directory: string | undefined): string {
  const user = agentUser();
  const group = `add the user nagare runs as (${user}) to the systemd-journal group (usermod -aG systemd-journal ${user}), then restart nagare, since a running process does not gain new groups`;
  return directory === undefined ? group : `let the user nagare runs as (${user}) read ${directory} and the journal files in it; for journald's own directories, ${group}`;
}

/** A journalctl failure the operator must fix, recognised from its output; undefined for anything else. */
export function journalctlProblem(output: string, directory: string | undefined): SourceProblem | undefined {
  const where = directory ?? "the system journal";
  const deniedDir = DENIED_DIR.exec(output);
  if (deniedDir !== null) return { cause: `cannot start reading the journal: journalctl may not open ${deniedDir[1]} (permission denied)`, fix: grantAccess(directory) };
  if (DENIED_FILES.test(output)) return { cause: `cannot start reading the journal: journalctl may not read any journal file of ${where} (insufficient permissions)`, fix: grantAccess(directory) };
  const missing = MISSING_DIR.exec(output);
  if (missing !== null) return { cause: `cannot start reading the journal: the journal directory ${missing[1]} does not exist`, fix: "create it (or mount the journal there), or correct `directory`" };
  return undefined;
}

/** What the probe before each reader start found out. */
export interface ProbeVerdict {
  /** The journal cannot be read: the reader is not started. */
  problem?: SourceProblem;
  /** The journal can be read only in part (the user's own entries): the reader starts, the problem stands. */
  partial?: SourceProblem;
  /** journalctl found no journal file at all: nothing to read yet, which is worth a WARN, not a failure. */
  noFiles: boolean;
}

/** Judges `journalctl --show-cursor` output; `needCursor` when start_at tail waits for the newest entry's cursor. */
export function judgeProbe(probe: JournalProbe, directory: string | undefined, needCursor: boolean): ProbeVerdict {
  const noFiles = NO_FILES.test(probe.output);
  const problem = journalctlProblem(probe.output, directory);
  if (problem !== undefined) return { problem, noFiles };
  const partial = PARTIAL.test(probe.output)
    ? { cause: `reads only part of the journal: journalctl shows the user nagare runs as (${agentUser()}) its own entries only, not those of the system and other users`, fix: grantAccess(directory) }
    : undefined;
  if (probe.cursor !== undefined || noFiles || EMPTY.test(probe.output)) return { partial, noFiles };
  // A journal too large to find its end in time is no reason to hold back a reader that starts at the head.
  if (probe.timedOut && !needCursor) return { partial, noFiles };
  const why = probe.timedOut ? "it did not answer in time" : `status ${probe.status}: ${probe.output.trim() || "no message"}`;
  return { problem: { cause: `cannot start reading the journal: journalctl could not find the end of the journal (${why})` }, noFiles };
}

/** The program is neither on PATH nor at the path given. */
export function missingProgram(program: string): SourceProblem | undefined {
  if (Bun.which(program) !== null) return undefined;
  const where = program.includes("/") ? `${program} does not exist or is not executable` : `${program} is not on PATH (${process.env.PATH ?? ""})`;
  return { cause: `cannot start reading the journal: the program ${where}`, fix: "install systemd (it provides journalctl), or set `journalctl` to the program's path" };
}

/** Any other failure to open the journal, with what to check where that is clear. */
export function openProblem(err: unknown, via: { url?: string; file?: string }): SourceProblem {
  const cause = `cannot start reading the journal: ${describeError(err)}`;
  if (via.url !== undefined) return { cause, fix: `check that systemd-journal-gatewayd runs at ${via.url} and that this host may reach it` };
  const code = (err as NodeJS.ErrnoException).code;
  if (via.file !== undefined && (code === "EACCES" || code === "EPERM")) return { cause, fix: `let the user nagare runs as (${agentUser()}) read ${via.file}` };
  if (via.file !== undefined && code === "ENOENT") return { cause, fix: "check `file`: it names a saved export stream that must exist" };
  return { cause };
}

/** The WARN for a journal without files: why there is nothing to read, and how to get something. */
export function noJournalFilesMessage(source: string, directory: string | undefined): string {
  if (directory !== undefined) {
    return `Source ${source} finds no journal files in ${directory} (journalctl says "No journal files were found"), so it has nothing to read until some appear there. If that is not expected, check \`directory\`: it must be where journald or systemd-journal-remote writes *.journal files.`;
  }
  return (
    `Source ${source} finds no journal files on this host (journalctl says "No journal files were found"): /var/log/journal and /run/log/journal hold none, as on a host or in a container without systemd-journald, so it has nothing to read. ` +
    "To fix it: run nagare on a host with systemd-journald, or, in a container, mount the host's journal (e.g. /var/log/journal) and set `directory` to it; " +
    "where journald keeps no journal files, set Storage=persistent in /etc/systemd/journald.conf and restart systemd-journald."
  );
}
