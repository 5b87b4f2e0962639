#!/usr/bin/env bash
# 4 containers × 250,000 json-file lines → file sink and → forward test server (acks), built binary; prints lines/s, MB/s and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build.sh
exec node_modules/.bin/bun scripts/bench/docker.ts "$@"
