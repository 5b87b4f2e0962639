import { z } from "zod";
import { duration, size } from "../../config/blocks/types.ts";

export const dockerSourceConfig = z
  .strictObject({
    type: z.literal("docker"),
    include: z
      .array(z.string().min(1))
      .min(1)
      .default(["/var/lib/docker/containers/*/*-json.log"])
      .describe("Glob patterns of container log files (Docker json-file, or CRI files under /var/log/pods)."),
    exclude: z.array(z.string().min(1)).default([]).describe("Glob patterns of files to leave out."),
    format: z.enum(["auto", "json-file", "cri"]).default("auto").describe("Log file format; auto decides per file from its first line."),
    start_at: z.enum(["head", "tail"]).default("head").describe("Where to start in a file with no saved position (files found after the start are always read from the head)."),
    max_line_bytes: size("A longer merged line is cut to this size, marked `_nagare_truncated: true`, and counted.", "1MiB"),
    metadata: z.boolean().default(true).describe("Add container_name, image and labels from the container's config.v2.json; for kubelet's files, container_name, pod_namespace, pod_name and pod_uid from the path."),
    max_open_files: z.number().int().min(1).max(65536).default(256).describe("At most this many log files are open at once; the others wait their turn."),
    rescan_interval: duration("How often the include patterns are searched again for new files.", "1s"),
    poll_interval: duration("How often an idle file is checked for new lines.", "250ms"),
    allowed_link_targets: z
      .array(z.string().min(1))
      .default(["/var/log/pods", "/var/lib/docker/containers"])
      .describe("Directories a log file reached through a symbolic link may lie in, besides the include patterns' own directories (kubelet's /var/log/containers links point into /var/log/pods). A file elsewhere, or not a regular file, is not read: a WARN names it and nagare_container_refused_files_total counts it."),
    forget_after: duration("How long the position of a file that is gone (deleted, its directory removed) is kept in case it comes back under its name (a remount, a rotation in progress); then it is dropped from memory and from the checkpoint.", "1h"),
  })
  .describe("Reads Docker json-file and CRI container log files, following rotation, resuming exactly.");

export type DockerSourceConfig = z.output<typeof dockerSourceConfig>;
