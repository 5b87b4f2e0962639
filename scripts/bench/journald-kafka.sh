#!/usr/bin/env bash
# 200,000-entry journal → librdkafka mock cluster with acks=all, built binary; prints entries/s and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x dist/nagare ] || bash scripts/build.sh
exec node_modules/.bin/bun scripts/bench/journald-kafka.ts "$@"
