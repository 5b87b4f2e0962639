#!/bin/sh
# nagare installer: curl -fsSL <base>/install.sh | sh
#
#   sh install.sh [--binary FILE] [--root DIR] [--no-start]    install or upgrade
#   sh install.sh --uninstall [--purge] [--root DIR]            remove binary and unit (--purge: config, data, logs, user)
#
# Installs /usr/local/bin/nagare (downloaded from $NAGARE_BASE_URL/nagare-linux-<arch> and checked against
# the published .sha256, or a local --binary), a `nagare` system user in the groups that read the journal,
# /etc/nagare/nagare.yaml only if absent (validated; it appends records to /var/log/nagare/records.jsonl,
# rotated by /etc/logrotate.d/nagare), and a hardened systemd unit that is enabled and (re)started where
# systemd runs. Running it again upgrades the binary and keeps config and checkpoints.
# --root DIR installs into an OS tree that has etc/passwd and etc/group (image builds, tests); nothing is started then.
set -eu

NAGARE_BASE_URL=${NAGARE_BASE_URL:-https://github.com/nagare-dev/nagare/releases/latest/download}
root=""
binary=""
action=install
purge=no
start=yes

say() { printf 'nagare-install: %s\n' "$*"; }
die() { printf 'nagare-install: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,12p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root=${2%/}; shift 2 ;;
    --uninstall) action=uninstall; shift ;;
    --purge) purge=yes; shift ;;
    --no-start) start=no; shift ;;
    -h|--help) usage ;;
    *) printf 'nagare-install: unknown option %s\n' "$1" >&2; usage ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "this installer must run as root (it creates a system user and a systemd unit); try: sudo sh install.sh"

# The nagare user is added to the tree's own account files (groupadd/useradd --prefix), which must be there:
# without them groupadd fails with "cannot lock .../etc/group; try again later", which sounds like a busy system.
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root does not exist or is not a directory; pass the root directory of the OS tree (image, chroot) to install into"
  missing=""
  for f in etc/passwd etc/group; do
    [ -f "$root/$f" ] || missing="${missing:+$missing and }$f"
  done
  [ -z "$missing" ] || die "--root $root does not look like an OS tree: it has no $missing (the nagare user and group are added there); pass the root directory of the OS tree (image, chroot) to install into"
fi

bin_path="$root/usr/local/bin/nagare"
conf_dir="$root/etc/nagare"
conf_path="$conf_dir/nagare.yaml"
data_dir="$root/var/lib/nagare"
log_dir="$root/var/log/nagare"
unit_path="$root/etc/systemd/system/nagare.service"
logrotate_path="$root/etc/logrotate.d/nagare"

systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

detect_platform() {
  os=$(uname -s)
  [ "$os" = Linux ] || die "unsupported operating system $os: nagare runs on Linux"
  machine=${NAGARE_ARCH:-$(uname -m)}
  case "$machine" in
    x86_64|amd64|x64) arch=x64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) die "unsupported architecture $machine: release binaries exist for x86_64 and aarch64" ;;
  esac
}

fetch() { # url file
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --connect-timeout 10 --max-time 300 -o "$2" "$1" || die "download failed: $1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 30 -O "$2" "$1" || die "download failed: $1"
  else
    die "neither curl nor wget is installed; install one, or pass --binary FILE"
  fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Puts the verified binary at $tmp/nagare.
obtain_binary() {
  if [ -n "$binary" ]; then
    [ -f "$binary" ] || die "$binary does not exist"
    cp "$binary" "$tmp/nagare"
    if [ -f "$binary.sha256" ]; then
      expected=$(cut -d' ' -f1 < "$binary.sha256")
      [ "$(sha256_of "$tmp/nagare")" = "$expected" ] || die "checksum mismatch: $binary does not match $binary.sha256; refusing to install it"
      say "verified $binary against $binary.sha256"
    fi
    return
  fi
  name="nagare-linux-$arch"
  fetch "$NAGARE_BASE_URL/$name" "$tmp/nagare"
  fetch "$NAGARE_BASE_URL/$name.sha256" "$tmp/nagare.sha256"
  expected=$(cut -d' ' -f1 < "$tmp/nagare.sha256")
  [ -n "$expected" ] || die "the checksum file $NAGARE_BASE_URL/$name.sha256 is empty"
  actual=$(sha256_of "$tmp/nagare")
  [ "$actual" = "$expected" ] || die "checksum mismatch for $NAGARE_BASE_URL/$name: expected $expected, got $actual; refusing to install it"
  say "downloaded $name and verified its SHA-256"
}

ensure_user() {
  prefix=""
  [ -z "$root" ] || prefix="--prefix $root"
  if ! grep -q '^nagare:' "$root/etc/group" 2>/dev/null; then
    # shellcheck disable=SC2086 # $prefix is empty or two words on purpose
    groupadd $prefix --system nagare || die "cannot create the group nagare"
  fi
  groups=""
  for g in systemd-journal adm; do
    if grep -q "^$g:" "$root/etc/group" 2>/dev/null; then groups="${groups:+$groups,}$g"; fi
  done
  if ! grep -q '^nagare:' "$root/etc/passwd" 2>/dev/null; then
    # shellcheck disable=SC2086
    useradd $prefix --system --gid nagare ${groups:+--groups "$groups"} --no-create-home --home-dir /var/lib/nagare \
      --shell /usr/sbin/nologin --comment "nagare log agent" nagare || die "cannot create the user nagare"
    say "created the system user nagare${groups:+ (groups: $groups)}"
  elif [ -n "$groups" ]; then
    # shellcheck disable=SC2086
    usermod $prefix --append --groups "$groups" nagare || die "cannot add nagare to $groups"
  fi
}

# Numeric ids from the target tree, so --root works without the user existing on this host.
id_of() { awk -F: -v n="$2" '$1 == n { print $3 }' "$root/etc/$1"; }

# dockerd keeps container logs under /var/lib/docker/containers, readable by root only.
has_docker() { [ -d "$root/var/lib/docker/containers" ]; }

write_config() {
  mkdir -p "$conf_dir"
  if [ -e "$conf_path" ]; then
    say "kept the existing $conf_path"
    return
  fi
  inputs="journal"
  {
    cat <<'YAML'
# nagare: follow the local journal (and Docker's container logs, if this host runs dockerd) from their tail
# and append records as JSON lines to /var/log/nagare/records.jsonl (rotated by /etc/logrotate.d/nagare).
# Replace the file sink with a kafka or forward sink (see the README) once your destination is known.
# Not a console sink: under systemd standard output goes to the journal, which the journal source reads.
data_dir: ${NAGARE_DATA_DIR:-/var/lib/nagare}
sources:
  journal:
    type: journald
    start_at: tail
YAML
    if has_docker; then
      inputs="journal, containers"
      cat <<'YAML'
  containers:
    type: docker
    include: ["/var/lib/docker/containers/*/*-json.log"]
    start_at: tail
YAML
    fi
    printf 'sinks:\n  file:\n    type: file\n    inputs: [%s]\n' "$inputs"
    cat <<'YAML'
    path: ${NAGARE_LOG_DIR:-/var/log/nagare}/records.jsonl
YAML
  } > "$conf_path"
  say "wrote $conf_path"
}

write_unit() {
  mkdir -p "$(dirname "$unit_path")"
  supplementary=""
  grep -q '^systemd-journal:' "$root/etc/group" 2>/dev/null && supplementary="SupplementaryGroups=systemd-journal"
  # Reading root-only container logs as the nagare user takes CAP_DAC_READ_SEARCH, and nothing more.
  capabilities="CapabilityBoundingSet="
  has_docker && capabilities="AmbientCapabilities=CAP_DAC_READ_SEARCH
CapabilityBoundingSet=CAP_DAC_READ_SEARCH"
  cat > "$unit_path" <<UNIT
[Unit]
Description=nagare edge log agent
Documentation=https://github.com/nagare-dev/nagare
After=network-online.target systemd-journald.service
Wants=network-online.target

[Service]
Type=simple
User=nagare
Group=nagare
$supplementary
$capabilities
Environment=NAGARE_DATA_DIR=/var/lib/nagare NAGARE_LOG_DIR=/var/log/nagare
ExecStartPre=/usr/local/bin/nagare validate -c /etc/nagare/nagare.yaml
ExecStart=/usr/local/bin/nagare run -c /etc/nagare/nagare.yaml
ExecReload=/bin/kill -HUP \$MAINPID
KillMode=mixed
TimeoutStopSec=45s
Restart=always
RestartSec=2s
StateDirectory=nagare
StateDirectoryMode=0750
LogsDirectory=nagare
LogsDirectoryMode=0750
LimitNOFILE=65536
UMask=0027
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ReadWritePaths=/var/lib/nagare
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# The agent needs only /proc/self (its memory, fds, cgroup); it and journalctl do without /proc/sys when hidden.
ProtectProc=invisible
ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
# Kafka, forward and gatewayd need IP; AF_UNIX serves NSS lookups (nscd, systemd-resolved). No AF_NETLINK:
# glibc's getaddrinfo takes its refusal as "IPv4 and IPv6 both present".
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
# Not MemoryDenyWriteExecute=yes: JavaScriptCore's JIT maps its code memory writable and executable; refused,
# JavaScriptCore falls back to its interpreter, many times slower.

[Install]
WantedBy=multi-user.target
UNIT
  chmod 0644 "$unit_path"
  say "wrote $unit_path"
}

# Rotation by rename (`create`): before each batch the file sink checks that its path still names the open
# file and otherwise opens the path anew, so records written meanwhile land in the renamed file and none is
# lost (copytruncate would lose those written between the copy and the truncation). delaycompress leaves the
# renamed file uncompressed for a day, long enough for the sink's last batch into it.
write_logrotate() {
  mkdir -p "$(dirname "$logrotate_path")"
  cat > "$logrotate_path" <<'ROTATE'
# Written by nagare's install.sh: the default config's file sink output.
/var/log/nagare/*.jsonl {
    su nagare nagare
    daily
    maxsize 100M
    rotate 5
    compress
    delaycompress
    missingok
    notifempty
    create 0640 nagare nagare
}
ROTATE
  chmod 0644 "$logrotate_path"
  say "wrote $logrotate_path"
  if [ -z "$root" ] && ! command -v logrotate >/dev/null 2>&1; then
    say "logrotate is not installed: /var/log/nagare/records.jsonl grows until you install it (apt-get install logrotate) or replace the file sink"
  fi
}

install_nagare() {
  detect_platform
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  obtain_binary
  chmod 0755 "$tmp/nagare"
  "$tmp/nagare" version >/dev/null 2>&1 || die "the binary does not run on this machine ($(uname -m))"
  mkdir -p "$(dirname "$bin_path")"
  upgrade=no
  [ -e "$bin_path" ] && upgrade=yes
  cp "$tmp/nagare" "$bin_path.new"
  chown 0:0 "$bin_path.new"
  chmod 0755 "$bin_path.new"
  mv -f "$bin_path.new" "$bin_path"
  say "$( [ $upgrade = yes ] && echo upgraded || echo installed ) $bin_path: $("$bin_path" version)"

  ensure_user
  uid=$(id_of passwd nagare)
  gid=$(id_of group nagare)
  for dir in "$data_dir" "$log_dir"; do
    mkdir -p "$dir"
    chown "$uid:$gid" "$dir"
    chmod 0750 "$dir"
  done
  write_config
  chown "0:$gid" "$conf_dir" "$conf_path"
  chmod 0750 "$conf_dir"
  chmod 0640 "$conf_path"
  NAGARE_DATA_DIR=$data_dir NAGARE_LOG_DIR=$log_dir "$bin_path" validate -c "$conf_path" >/dev/null ||
    die "$conf_path is not valid (see above); fix it, then run the installer again"
  say "validated $conf_path"
  write_unit
  write_logrotate

  if systemd_running; then
    systemctl daemon-reload
    systemctl enable nagare.service >/dev/null 2>&1
    if [ "$start" = yes ]; then
      systemctl restart nagare.service || die "nagare did not start; see: journalctl -u nagare"
      say "nagare.service is enabled and (re)started; logs: journalctl -u nagare"
    else
      say "nagare.service is enabled; start it with: systemctl start nagare"
    fi
  else
    say "systemd is not running here (image build, container or --root): the unit is installed but not started."
    say "on the running host: systemctl daemon-reload && systemctl enable --now nagare"
  fi
}

uninstall_nagare() {
  if systemd_running; then
    systemctl disable --now nagare.service >/dev/null 2>&1 || true
  fi
  rm -f "$bin_path" "$unit_path" "$logrotate_path"
  systemd_running && systemctl daemon-reload
  say "removed $bin_path, $unit_path and $logrotate_path"
  if [ "$purge" = yes ]; then
    rm -rf "$conf_dir" "$data_dir" "$log_dir"
    prefix=""
    [ -z "$root" ] || prefix="--prefix $root"
    if grep -q '^nagare:' "$root/etc/passwd" 2>/dev/null; then
      # shellcheck disable=SC2086
      userdel $prefix nagare 2>/dev/null || true
    fi
    if grep -q '^nagare:' "$root/etc/group" 2>/dev/null; then
      # shellcheck disable=SC2086
      groupdel $prefix nagare 2>/dev/null || true
    fi
    say "purged $conf_dir, $data_dir, $log_dir and the user nagare"
  else
    say "kept $conf_dir, $data_dir (checkpoints) and $log_dir; remove them with --uninstall --purge"
  fi
}

case "$action" in
  install) install_nagare ;;
  uninstall) uninstall_nagare ;;
esac
