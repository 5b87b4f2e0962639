import { z } from "zod";
import { size, duration } from "../../config/blocks/types.ts";

export const journaldSourceConfig = z
  .strictObject({
    type: z.literal("journald"),
    journalctl: z
      .string()
      .min(1)
      .default("journalctl")
      .describe("Program run as `journalctl -o export --all --follow --no-pager` (name on PATH or a path)."),
    directory: z.string().min(1).optional().describe("Read journal files from this directory (`journalctl -D`)."),
    matches: z
      .array(z.string().regex(/^[A-Z0-9_]+=.*$|^\+$/, "a match is FIELD=value (or + for OR)"))
      .default([])
      .describe("journalctl matches such as `_SYSTEMD_UNIT=nginx.service`; `+` separates OR groups."),
    url: z
      .url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" })
      .optional()
      .meta({
        description: "Read from systemd-journal-gatewayd at this base URL (e.g. http://host:19531) instead of journalctl.",
        pattern: "^https?://", // the protocol check, which zod's JSON Schema leaves out
      }),
    file: z.string().min(1).optional().describe("Read a saved export stream (`journalctl -o export` output) once."),
    start_at: z
      .enum(["head", "tail"])
      .default("tail")
      .describe("Where to start when there is no saved position: the oldest entry or only new entries."),
    max_field_bytes: size("A longer field value is cut to this size and the entry marked `_nagare_truncated`.", "2MiB"),
    max_entry_bytes: size("Fields beyond this many bytes in one entry are dropped and the entry marked truncated.", "4MiB"),
    restart_backoff_max: duration("Longest wait between restarts of a failed journalctl or gateway connection.", "30s"),
    connect_timeout: duration("How long to wait for the gateway to answer, or for journalctl to report the journal's end.", "10s"),
    idle_timeout: duration(
      "With `url`: reconnect from the last entry read when the gateway stream brings nothing for this long (0: never). gatewayd sends nothing while the journal is quiet, so on a quiet host this is routine and logged at debug level; it also ends a stream that stalled or that a NAT dropped silently.",
      "60s",
    ),
    exclude_own_unit: z
      .boolean()
      .default(true)
      .describe("Skip entries that nagare itself wrote: those of nagare.service, nagare@*.service and the unit the agent runs in (from /proc/self/cgroup). Under systemd the agent's output goes to the journal, so a console sink would otherwise print its own lines again and again."),
    exclude_units: z
      .array(z.string().regex(/^[^\s/=]+$/, "a unit name such as `foo.service`, `*` for any characters"))
      .default([])
      .describe("More systemd units whose entries are skipped, matched against `_SYSTEMD_UNIT` and `_SYSTEMD_USER_UNIT`; `*` matches any characters (`noisy-*.service`). Skipped entries are counted in nagare_source_excluded_records_total."),
  })
  .check((ctx) => {
    const c = ctx.value;
    if (c.url !== undefined && c.file !== undefined) {
      ctx.issues.push({ code: "custom", input: c, path: ["url"], message: "set either `url` or `file`, not both" });
    }
    if ((c.url !== undefined || c.file !== undefined) && (c.directory !== undefined || c.matches.length > 0)) {
      ctx.issues.push({
        code: "custom",
        input: c,
        path: [c.directory !== undefined ? "directory" : "matches"],
        message: "only applies when reading through journalctl (no `url` or `file`)",
      });
    }
  })
  // The check above as JSON Schema, for editors and linters (`nagare schema`).
  .meta({
    description: "Reads the systemd journal in the journal export format.",
    $comment: "`url` and `file` exclude each other; `directory` and `matches` apply only when reading through journalctl.",
    allOf: [
      { not: { required: ["url", "file"] } },
      {
        if: { anyOf: [{ required: ["url"] }, { required: ["file"] }] },
        then: { not: { anyOf: [{ required: ["directory"] }, { required: ["matches"], properties: { matches: { type: "array", minItems: 1 } } }] } },
      },
    ],
  });

export type JournaldSourceConfig = z.output<typeof journaldSourceConfig>;
