/**
 * Container metadata added to each record (`metadata: true`), from one of two places:
 * - Docker: the container directory's config.v2.json (dockerd's own record of the container): name, image and
 *   labels. Read once per container and again only when the file's modification time changes.
 * - Kubernetes: kubelet's file names. Pod namespace, pod name and container name are DNS labels (no `_`), so the
 *   names below split without guessing. There is no config.v2.json there, and nothing else to read.
 *     /var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart count>.log
 *     /var/log/containers/<pod>_<namespace>_<container>-<64 hex container id>.log   (symlinks to the above)
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export interface ContainerMetadata {
  container_name: string;
  image?: string;
  labels?: Record<string, string>;
  pod_namespace?: string;
  pod_name?: string;
  pod_uid?: string;
}

interface Cached {
  mtimeMs: number;
  metadata: ContainerMetadata | undefined;
}

const POD_DIR = /^([a-z0-9][a-z0-9.-]*)_([a-z0-9][a-z0-9.-]*)_([0-9a-f-]+)$/;
const RESTART_FILE = /^\d+\.log$/;
const CONTAINERS_LINK = /^([a-z0-9][a-z0-9.-]*)_([a-z0-9][a-z0-9.-]*)_([a-z0-9][a-z0-9-]*)-[0-9a-f]{64}\.log$/;

/** Pod and container names from a kubelet log path, or undefined when the path is not in kubelet's layout. */
export function kubeletMetadataOf(path: string): ContainerMetadata | undefined {
  const name = basename(path);
  const link = CONTAINERS_LINK.exec(name);
  if (link) return { container_name: link[3]!, pod_namespace: link[2]!, pod_name: link[1]! };
  if (!RESTART_FILE.test(name)) return undefined;
  const containerDir = dirname(path);
  const pod = POD_DIR.exec(basename(dirname(containerDir)));
  if (!pod) return undefined;
  return { container_name: basename(containerDir), pod_namespace: pod[1]!, pod_name: pod[2]!, pod_uid: pod[3]! };
}

export class MetadataCache {
  private readonly dockerByDir = new Map<string, Cached>();

  /** Metadata of the container writing the log file `path`, or undefined when there is none to be had. */
  get(path: string): ContainerMetadata | undefined {
    return kubeletMetadataOf(path) ?? this.docker(dirname(path));
  }

  forget(path: string): void {
    this.dockerByDir.delete(dirname(path));
  }

  private docker(dir: string): ContainerMetadata | undefined {
    const path = join(dir, "config.v2.json");
    let mtimeMs: number;
    try {
      mtimeMs = statSync(path).mtimeMs;
    } catch {
      return undefined;
    }
    const cached = this.dockerByDir.get(dir);
    if (cached !== undefined && cached.mtimeMs === mtimeMs) return cached.metadata;
    const metadata = readDockerConfig(path);
    this.dockerByDir.set(dir, { mtimeMs, metadata });
    return metadata;
  }
}

/** Read only as the regular file dockerd writes: a link planted in its place is not followed (see guard.ts). */
function readDockerConfig(path: string): ContainerMetadata | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) return undefined;
    const config = JSON.parse(readFileSync(fd, "utf8")) as { Name?: string; Config?: { Image?: string; Labels?: Record<string, string> | null } };
    return {
      container_name: (config.Name ?? "").replace(/^\//, ""),
      image: config.Config?.Image ?? "",
      labels: config.Config?.Labels ?? {},
    };
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
