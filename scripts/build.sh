#!/usr/bin/env bash
# Builds the single self-contained binary dist/nagare (no Bun or Node needed where it runs); see scripts/build.ts.
# An argument names another output directory (tests build into their temp dir and leave dist/ alone).
set -euo pipefail
out=${1:+$(realpath -m "$1")}
cd "$(dirname "$0")/.."
out=${out:-$PWD/dist}
[ -x node_modules/.bin/bun ] || npm ci --no-audit --no-fund --loglevel=error
mkdir -p "$out"
node_modules/.bin/bun scripts/build.ts "$out/nagare"
echo "built $out/nagare ($(du -h "$out/nagare" | cut -f1))"
