#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test target.
# Tests that need root or mounts skip with a reason when not root; CI runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
swift build --build-tests
swift test --skip-build "$@"
