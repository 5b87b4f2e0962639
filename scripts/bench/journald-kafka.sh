#!/usr/bin/env bash
# 200,000-entry journals → librdkafka mock cluster (acks=all), with and without a 10 ms round trip, built binary;
# prints entries/s, the ratio to journalctl -o export and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build.sh
exec node_modules/.bin/bun scripts/bench/journald-kafka.ts "$@"
