/**
 * Container metadata from the container directory's config.v2.json (dockerd's own record of the container):
 * name, image and labels. Read once per container and again only when the file's modification time changes.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export interface ContainerMetadata {
  container_name: string;
  image: string;
  labels: Record<string, string>;
}

interface Cached {
  mtimeMs: number;
  metadata: ContainerMetadata | undefined;
}

export class MetadataCache {
  private readonly cache = new Map<string, Cached>();

  /** Metadata of the container whose directory is `dir`, or undefined when there is no readable config.v2.json. */
  get(dir: string): ContainerMetadata | undefined {
    const path = join(dir, "config.v2.json");
    let mtimeMs: number;
    try {
      mtimeMs = statSync(path).mtimeMs;
    } catch {
      return undefined;
    }
    const cached = this.cache.get(dir);
    if (cached !== undefined && cached.mtimeMs === mtimeMs) return cached.metadata;
    const metadata = read(path);
    this.cache.set(dir, { mtimeMs, metadata });
    return metadata;
  }

  forget(dir: string): void {
    this.cache.delete(dir);
  }
}

function read(path: string): ContainerMetadata | undefined {
  try {
    const config = JSON.parse(readFileSync(path, "utf8")) as { Name?: string; Config?: { Image?: string; Labels?: Record<string, string> | null } };
    return {
      container_name: (config.Name ?? "").replace(/^\//, ""),
      image: config.Config?.Image ?? "",
      labels: config.Config?.Labels ?? {},
    };
  } catch {
    return undefined;
  }
}
