#!/usr/bin/env bash
# Builds the release binary for this machine's architecture: dist/nagare-linux-<arch> and its .sha256
# ("<hash>  nagare-linux-<arch>", as sha256sum writes it), the files install.sh downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "release.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
bash scripts/build.sh >/dev/null
name="nagare-linux-$arch"
cp dist/nagare "dist/$name"
(cd dist && sha256sum "$name" > "$name.sha256")
cp install.sh dist/install.sh
echo "dist/$name ($(du -h "dist/$name" | cut -f1)), dist/$name.sha256, dist/install.sh"
