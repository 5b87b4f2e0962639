#!/usr/bin/env bash
# 200,000-entry journal → file sink with the built binary; prints entries/s and peak RSS next to journalctl.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build.sh
exec node_modules/.bin/bun scripts/bench/journald.ts "$@"
