/**
 * The embedded default, used by `nagare run` when no -c is given and /etc/nagare/nagare.yaml does not exist:
 * follow the local journal from its tail, and the Docker container logs when this host has them (and the agent
 * may read them), and print the records as JSON lines.
 */
import { unreadable } from "../core/fs-access.ts";

export const DEFAULT_CONFIG_PATH = "/etc/nagare/nagare.yaml";

/** Where dockerd keeps container directories, each with its `<id>-json.log`. */
const DOCKER_CONTAINERS_DIR = "/var/lib/docker/containers";

export function embeddedDefault(containersDir = DOCKER_CONTAINERS_DIR): string {
  const docker = readable(containersDir);
  const containers = `  containers:
    type: docker
    include: [${JSON.stringify(`${containersDir}/*/*-json.log`)}]
    start_at: tail
`;
  return `# nagare embedded default
data_dir: \${NAGARE_DATA_DIR:-/var/lib/nagare}
sources:
  journal:
    type: journald
    start_at: tail
${docker ? containers : ""}sinks:
  stdout:
    type: console
    inputs: [${docker ? "journal, containers" : "journal"}]
`;
}

function readable(dir: string): boolean {
  return unreadable(dir) === undefined;
}
