#!/bin/sh
# Installs nagare from a local binary: /usr/local/bin/nagare, and /etc/nagare/nagare.yaml only if absent
# (an operator's config is never overwritten), validated with `nagare validate`.
#
#   sh install.sh --binary dist/nagare [--root DIR]
#
# --root DIR installs into a directory tree instead of / (image builds, tests). Run from a checkout without
# --binary, it builds dist/nagare first. Downloading release binaries, the systemd unit and the service user
# come with the distribution work.
set -eu

binary=""
root=""
usage() { echo "usage: install.sh [--binary FILE] [--root DIR]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown option $1" >&2; usage ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$binary" ]; then
  if [ -f "$here/scripts/build.sh" ]; then
    bash "$here/scripts/build.sh"
    binary="$here/dist/nagare"
  else
    echo "install.sh: pass --binary FILE (the nagare binary to install)" >&2
    exit 2
  fi
fi
[ -f "$binary" ] || { echo "install.sh: $binary does not exist" >&2; exit 1; }
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: installing into / needs root (or use --root DIR)" >&2
  exit 1
fi

bindir="$root/usr/local/bin"
confdir="$root/etc/nagare"
mkdir -p "$bindir" "$confdir"
tmp="$bindir/.nagare.new.$$"
cp "$binary" "$tmp"
chmod 0755 "$tmp"
"$tmp" version >/dev/null || { rm -f "$tmp"; echo "install.sh: $binary does not run on this machine" >&2; exit 1; }
mv -f "$tmp" "$bindir/nagare"
echo "installed $bindir/nagare ($("$bindir/nagare" version))"

config="$confdir/nagare.yaml"
if [ -e "$config" ]; then
  echo "kept the existing $config"
else
  cat > "$config" <<'YAML'
# nagare: follow the local journal from its tail and print records as JSON lines.
# Replace the console sink with kafka or forward sinks once they are configured.
data_dir: ${NAGARE_DATA_DIR:-/var/lib/nagare}
sources:
  journal:
    type: journald
    start_at: tail
sinks:
  stdout:
    type: console
    inputs: [journal]
YAML
  chmod 0644 "$config"
  echo "wrote $config"
fi
if ! NAGARE_DATA_DIR="${NAGARE_DATA_DIR:-$root/var/lib/nagare}" "$bindir/nagare" validate -c "$config" >/dev/null; then
  echo "install.sh: $config is not valid (see above); fix it before starting nagare" >&2
  exit 78
fi
echo "validated $config"
