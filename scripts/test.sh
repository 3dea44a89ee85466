#!/usr/bin/env bash
# Runs the whole test suite: unit tests next to the code and the end-to-end tests in tests/,
# which start real gateway and agent processes, a recording upstream and git on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked "$@"
