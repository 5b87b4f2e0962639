/**
 * The embedded default, used by `nagare run` when no -c is given and /etc/nagare/nagare.yaml does not exist:
 * follow the local journal from its tail and print the records as JSON lines. Container logs join here once
 * the docker source exists.
 */
export const DEFAULT_CONFIG_PATH = "/etc/nagare/nagare.yaml";

export const EMBEDDED_DEFAULT = `# nagare embedded default
data_dir: \${NAGARE_DATA_DIR:-/var/lib/nagare}
sources:
  journal:
    type: journald
    start_at: tail
sinks:
  stdout:
    type: console
    inputs: [journal]
`;
