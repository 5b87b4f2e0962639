#!/usr/bin/env bash
# Builds the release files for this machine's architecture:
#   dist/nagare-linux-<arch> and its .sha256 ("<hash>  nagare-linux-<arch>", as sha256sum writes it) and
#   dist/install.sh, the files the curl installer downloads;
#   dist/nagare_<version>_<debarch>.deb and dist/nagare-<version>-1.<rpmarch>.rpm (deploy/packages/build.sh).
# An argument names another output directory instead of dist.
set -euo pipefail
out=${1:+$(realpath -m "$1")}
cd "$(dirname "$0")/.."
out=${out:-$PWD/dist}
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "release.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
bash scripts/build.sh "$out" >/dev/null
name="nagare-linux-$arch"
cp "$out/nagare" "$out/$name"
(cd "$out" && sha256sum "$name" > "$name.sha256")
cp install.sh "$out/install.sh"
packages=$(bash deploy/packages/build.sh "$out/$name" "$out")
echo "$out/$name ($(du -h "$out/$name" | cut -f1)), $out/$name.sha256, $out/install.sh, $packages"
