#!/usr/bin/env bash
# 200,000-entry journal → the forward test server with acks, built binary; prints entries/s and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build.sh
exec node_modules/.bin/bun scripts/bench/journald-forward.ts "$@"
