#!/usr/bin/env bash
# 200,000-entry journals → a real 3-node Kafka cluster on this machine (acks=all, rf 3), built binary; prints
# entries/s, the ratio to journalctl -o export and peak RSS. Needs the Kafka jars (bash scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build.sh
exec node_modules/.bin/bun scripts/bench/journald-kafka-cluster.ts "$@"
