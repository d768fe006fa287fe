#!/usr/bin/env bash
# The test suite: brings the local stack up (installing what is missing, see
# up.sh), then runs every unit and integration test of the workspace against
# the real engines. Extra arguments go to `cargo test` (e.g. `-p schemas`).
# Ends with one line totalling every test binary: "tests: N passed, N failed".
source "$(dirname "$0")/lib.sh"

"$DEPLOY/up.sh"
log "cargo test --workspace (target dir $CARGO_TARGET_DIR)"
cd "$ROOT"
out="$STATE/test-output.log"
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$out"
exit "$rc"
