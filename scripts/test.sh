#!/usr/bin/env bash
# Runs the whole test suite: unit tests next to the code and the end-to-end tests in tests/,
# which start real gateway and agent processes, a recording upstream, git, supervisord and
# headless Chromium on loopback. Ends with one line adding up every test binary's result.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --all-targets "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
