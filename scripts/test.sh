#!/usr/bin/env bash
# Runs the whole test suite with Bun's test runner and ends with one line "N passed, N failed".
# Arguments are passed to `bun test` (e.g. a file name to run one file).
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
node_modules/.bin/bun test --timeout 600000 "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
passed=$(grep -E '^\s*[0-9]+ pass$' "$out" | tail -n 1 | awk '{print $1}')
failed=$(grep -E '^\s*[0-9]+ fail$' "$out" | tail -n 1 | awk '{print $1}')
if [ "$rc" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then failed=1; fi
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$rc"
