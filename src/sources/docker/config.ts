import { z } from "zod";
import { duration, size } from "../../config/types.ts";

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
  })
  .describe("Reads Docker json-file and CRI container log files, following rotation, resuming exactly.");

export type DockerSourceConfig = z.output<typeof dockerSourceConfig>;
