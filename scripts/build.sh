#!/usr/bin/env bash
# Builds the single self-contained binary dist/nagare (no Bun or Node needed where it runs); see scripts/build.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/bun ] || npm ci --no-audit --no-fund --loglevel=error
mkdir -p dist
node_modules/.bin/bun scripts/build.ts
echo "built dist/nagare ($(du -h dist/nagare | cut -f1))"
