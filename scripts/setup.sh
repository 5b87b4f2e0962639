#!/usr/bin/env bash
# Install what a fresh Debian 12 machine with only Node and npm lacks for running and testing nagare.
# Idempotent: apt is touched only when a package is missing; npm ci runs only when package-lock.json changed
# since the last successful run of this script (stamp in node_modules/), because npm ci deletes node_modules
# first. NAGARE_SETUP_FORCE_NPM=1 forces it.
#
#   systemd                 journalctl (the journald source's reader and the tests' oracle) and
#                           systemd-socket-activate (tests start systemd-journal-gatewayd on a chosen port with it;
#                           gatewayd has no port option)
#   systemd-journal-remote  systemd-journal-remote (builds real journal files in tests), systemd-journal-gatewayd
#   librdkafka-dev gcc make pkg-config
#                           the Kafka mock-cluster harness in test/ is built against rdkafka_mock.h
#   kcat                    reads Kafka topics back in tests
#   ShellCheck (package shellcheck)  lints install.sh and scripts/*.sh
#   curl coreutils util-linux passwd
#                           install.sh (download, sha256sum, useradd) and its tests (setpriv, unshare); stdbuf speeds
#                           journalctl
#   strace logrotate        the unit's system-call filter is checked against the agent's traced calls; the
#                           installed logrotate rule is run against the agent's records file
#   prometheus              promtool checks the /metrics output in tests
#   openssl                 makes the TLS certificates of the forward and Kafka tests
#   rpm binutils fakeroot   scripts/release.sh's .rpm (rpmbuild), the glibc version the packages depend on
#                           (objdump), install.sh run for the packages' unit and config when not root (fakeroot)
#   debootstrap             the throwaway Debian that test/packages.test.ts installs the .deb into
#   openjdk-17-jre-headless maven
#                           only where java / mvn are missing: the real Kafka cluster of the tests
#                           (test/support/kafka-cluster.ts) runs Apache Kafka's jars, which Maven fetches from
#                           Maven Central (test/kafka-cluster/pom.xml) into test/kafka-cluster/lib/ (not
#                           committed; skipped while lib/ holds what the pom names: stamp = sha256 of the pom).
#                           NAGARE_SETUP_FORCE_MAVEN=1 fetches them again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(systemd systemd-journal-remote librdkafka-dev kcat gcc make pkg-config shellcheck curl coreutils util-linux passwd strace logrotate prometheus openssl rpm binutils fakeroot debootstrap)
# Any Java 17+ and any Maven will do; Debian's are installed only when there is none on the PATH.
command -v java >/dev/null 2>&1 || PACKAGES+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || PACKAGES+=(maven)

step() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  die "this script needs a Debian-based system (dpkg-query and apt-get not found)"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  step "system packages: all present (${PACKAGES[*]})"
else
  SUDO=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 ||
      die "need root to install ${missing[*]}: run as root, or install sudo"
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  step "apt-get update"
  "${SUDO[@]}" apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
  step "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$log" 2>&1 || { cat "$log" >&2; die "apt-get install ${missing[*]} failed"; }
fi

cd "$ROOT"
command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js and npm first"
stamp_file="node_modules/.nagare-setup-stamp"
if [[ -f package-lock.json ]]; then
  stamp="$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)"
  if [[ "${NAGARE_SETUP_FORCE_NPM:-0}" != 1 && -x node_modules/.bin/bun && -f "$stamp_file" &&
        "$(cat "$stamp_file")" == "$stamp" ]]; then
    step "npm ci: node_modules already matches package-lock.json (skipped)"
  else
    step "npm ci"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    printf '%s\n' "$stamp" >"$stamp_file"
  fi
else
  step "npm install (no package-lock.json)"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

kafka_pom="test/kafka-cluster/pom.xml"
kafka_lib="test/kafka-cluster/lib"
kafka_stamp_file="$kafka_lib/.nagare-setup-stamp"
kafka_stamp="$(sha256sum "$kafka_pom" | cut -d' ' -f1)"
if [[ "${NAGARE_SETUP_FORCE_MAVEN:-0}" != 1 && -f "$kafka_stamp_file" && "$(cat "$kafka_stamp_file")" == "$kafka_stamp" ]] &&
   compgen -G "$kafka_lib/kafka_2.13-*.jar" >/dev/null; then
  step "Kafka jars: $kafka_lib already matches $kafka_pom (skipped)"
else
  step "mvn dependency:copy-dependencies: Kafka jars for the tests into $kafka_lib"
  command -v mvn >/dev/null 2>&1 || die "mvn not found (package maven)"
  # Into a fresh directory first, so an interrupted download never leaves a half-filled lib/ with a good stamp.
  kafka_tmp="$kafka_lib.tmp.$$"
  rm -rf "$kafka_tmp"
  mvn_log="$(mktemp)"
  if ! mvn -q -B -Dstyle.color=never -f "$kafka_pom" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$ROOT/$kafka_tmp" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -rf "$kafka_tmp" "$mvn_log"
    die "mvn could not fetch the Kafka jars named in $kafka_pom"
  fi
  rm -f "$mvn_log"
  rm -rf "$kafka_lib"
  mv "$kafka_tmp" "$kafka_lib"
  printf '%s\n' "$kafka_stamp" >"$kafka_stamp_file"
fi

step "verify tools"
problems=()
for f in /lib/systemd/systemd-journal-remote /lib/systemd/systemd-journal-gatewayd; do
  [[ -x "$f" ]] || problems+=("$f is missing (package systemd-journal-remote)")
done
for c in journalctl systemd-socket-activate; do
  command -v "$c" >/dev/null 2>&1 || problems+=("$c is missing (package systemd)")
done
for c in kcat gcc make pkg-config shellcheck promtool curl setpriv unshare stdbuf strace java mvn openssl rpmbuild objdump fakeroot dpkg-deb; do
  command -v "$c" >/dev/null 2>&1 || problems+=("$c is missing")
done
[[ -x /usr/sbin/logrotate ]] || problems+=("/usr/sbin/logrotate is missing (package logrotate)")
[[ -x /usr/sbin/debootstrap ]] || problems+=("/usr/sbin/debootstrap is missing (package debootstrap)")
pkg-config --exists rdkafka 2>/dev/null || problems+=("pkg-config cannot find rdkafka (package librdkafka-dev)")
compgen -G "$ROOT/test/kafka-cluster/lib/kafka_2.13-*.jar" >/dev/null ||
  problems+=("test/kafka-cluster/lib/ has no kafka_2.13 jar (the Maven step above)")
if command -v java >/dev/null 2>&1; then
  # Kafka 4's broker needs Java 17 (its class files are version 61).
  java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [[ "${java_major:-0}" =~ ^[0-9]+$ && "$java_major" -ge 17 ]] || problems+=("java is version ${java_major:-unknown}; the Kafka broker needs 17 or newer")
fi
if [[ ! -x "$ROOT/node_modules/.bin/bun" ]]; then
  problems+=("node_modules/.bin/bun is missing (npm package bun, a devDependency)")
elif ! "$ROOT/node_modules/.bin/bun" --version >/dev/null 2>&1; then
  problems+=("node_modules/.bin/bun does not run")
fi
if ((${#problems[@]} > 0)); then
  printf 'setup: %s\n' "${problems[@]}" >&2
  exit 1
fi
step "ready: bun $("$ROOT/node_modules/.bin/bun" --version), $(journalctl --version | head -n1), java $java_major, $(basename "$(compgen -G "$ROOT/test/kafka-cluster/lib/kafka_2.13-*.jar")" .jar)"
