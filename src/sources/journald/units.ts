/**
 * Which journal entries the source skips because nagare itself wrote them. Under systemd, a unit's stdout and
 * stderr go to the journal: an agent that reads the journal and prints what it read (the console sink) would
 * read its own lines back and print them again, each round escaping the last, without end.
 *
 * An entry is skipped when its `_SYSTEMD_UNIT` or `_SYSTEMD_USER_UNIT` names an excluded unit. Both are
 * trusted fields that journald sets from the writer's cgroup; the user unit is needed when nagare runs under a
 * user manager, where `_SYSTEMD_UNIT` is `user@UID.service` for every user unit alike. `UNIT`, `USER_UNIT` and
 * `OBJECT_SYSTEMD_UNIT` are not looked at: systemd, journald and systemd-coredump write those about a unit
 * (started, stopped, crashed, rate-limited), one per event, so they cannot loop, and they are what an operator
 * needs to see when nagare itself fails.
 */
import { readFileSync } from "node:fs";
import type { Fields } from "../../core/record.ts";

/** Units that are nagare wherever it runs: the packaged unit and any instance of a template of that name. */
const NAGARE_UNITS = ["nagare.service", "nagare@*.service"] as const;

/** The cgroup membership file; NAGARE_CGROUP_FILE replaces it so tests can pose as a unit without systemd. */
function cgroupFile(): string {
  return process.env.NAGARE_CGROUP_FILE ?? "/proc/self/cgroup";
}

/** The unit this process runs in (read from `path`), or undefined when it is in none or the file is unreadable. */
export function readOwnUnit(path = cgroupFile()): string | undefined {
  try {
    return ownUnit(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The systemd unit named by /proc/self/cgroup: the unified hierarchy (`0::/system.slice/foo.service`) when it
 * names one, else systemd's own v1 hierarchy (`1:name=systemd:/system.slice/foo.service`). Undefined for the
 * root (a container with its own cgroup namespace), a cgroup systemd does not manage (`/docker/<id>`), PID 1's
 * `init.scope`, and a login session's scope: that holds the user's shell and everything started from it (sudo
 * logs there too), and a program started from a shell prints to the terminal, not to the journal.
 */
export function ownUnit(cgroups: string): string | undefined {
  let v1: string | undefined;
  for (const line of cgroups.split("\n")) {
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (line.slice(0, first) === "0" && controllers === "") {
      const unit = unitOfPath(path);
      if (unit !== undefined) return unit;
    } else if (controllers.split(",").includes("name=systemd")) v1 = unitOfPath(path);
  }
  return v1;
}

/**
 * The unit of a cgroup path, as systemd derives it: slices are containers, the first other component is the
 * unit (deeper ones are its own sub-cgroups, e.g. with Delegate=yes); below `user@UID.service` the path
 * continues into the user manager's tree, whose unit is the process's (user) unit.
 */
function unitOfPath(path: string): string | undefined {
  const parts = path.split("/").filter((p) => p !== "");
  const manager = parts.findIndex((p) => /^user@\d+\.service$/.test(p));
  const inner = manager < 0 ? parts : parts.slice(manager + 1);
  const unit = inner.find((p) => !p.endsWith(".slice"));
  if (unit === undefined || !/^[^/]+\.(service|scope)$/.test(unit)) return undefined;
  if (unit === "init.scope" || /^session-[^/]+\.scope$/.test(unit)) return undefined;
  return unit;
}

/** Distinct unit names whose verdict is remembered; a host has a few hundred units at most. */
const MAX_DECIDED = 4096;

/**
 * The units to skip: names compared as they are, patterns with `*` (any characters) folded into one anchored
 * regular expression. The verdict per unit name is remembered, so checking an entry costs two property reads
 * and one hash lookup of a string the parser already made: nothing is allocated per entry.
 */
export class UnitExclusion {
  private readonly names: ReadonlySet<string>;
  private readonly pattern: RegExp | undefined;
  private readonly decided = new Map<string, boolean>();

  constructor(readonly units: readonly string[]) {
    this.names = new Set(units.filter((u) => !u.includes("*")));
    const globs = units.filter((u) => u.includes("*")).map((u) => u.split("*").map(escapeRegExp).join(".*"));
    this.pattern = globs.length === 0 ? undefined : new RegExp(`^(?:${globs.join("|")})$`);
  }

  /** The exclusion a source config asks for; undefined when it skips nothing. */
  static of(config: { exclude_own_unit: boolean; exclude_units: readonly string[] }, ownUnit: string | undefined): UnitExclusion | undefined {
    const units = new Set<string>(config.exclude_units);
    if (config.exclude_own_unit) {
      for (const u of NAGARE_UNITS) units.add(u);
      if (ownUnit !== undefined) units.add(ownUnit);
    }
    return units.size === 0 ? undefined : new UnitExclusion([...units]);
  }

  excludes(fields: Fields): boolean {
    const unit = fields._SYSTEMD_UNIT;
    if (typeof unit === "string" && this.matches(unit)) return true;
    const userUnit = fields._SYSTEMD_USER_UNIT;
    return typeof userUnit === "string" && this.matches(userUnit);
  }

  matches(unit: string): boolean {
    const known = this.decided.get(unit);
    if (known !== undefined) return known;
    const verdict = this.names.has(unit) || (this.pattern !== undefined && this.pattern.test(unit));
    // A copy as the key: the parser's string is a slice of its whole entry, which the map would keep alive.
    if (this.decided.size < MAX_DECIDED) this.decided.set(Buffer.from(unit).toString(), verdict);
    return verdict;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}
