#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that take untrusted input
# (fuzz/fuzz_targets/: edge requests, client IPs, click ids, raw events,
# the KPI CSV import, the API's validators), with cargo-fuzz (libFuzzer).
#
#   deploy/local/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 60 s for every target. test.sh runs it for FUZZ_SECONDS (15)
# each. First replays every input under fuzz/regressions/<target>/ (crashes
# found before, kept as regression tests); then fuzzes from those and the
# corpus kept in $STATE/fuzz-corpus/<target>. A crash stops the run with
# exit 1 and leaves its input in $STATE/fuzz-artifacts/<target>/: copy it
# to fuzz/regressions/<target>/ with the fix.
#
# cargo-fuzz needs nightly flags; on the stable toolchain RUSTC_BOOTSTRAP=1
# allows them. No sanitizer (`-s none`): the code is safe Rust (unsafe is
# forbidden in every crate), so panics, overflows (debug assertions are on)
# and aborts are what there is to find.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_TARGET=${1:-60}
shift || true
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --quiet
fi

export RUSTC_BOOTSTRAP=1
# Its own target dir: instrumented builds never mix with the workspace's.
export CARGO_TARGET_DIR="$CACHE/fuzz-target"
cd "$ROOT/fuzz"
log "building the fuzz targets (instrumented, release with debug assertions)"
cargo fuzz build -s none
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

failed=0
for t in "${targets[@]}"; do
  corpus="$STATE/fuzz-corpus/$t" artifacts="$STATE/fuzz-artifacts/$t" regressions="$ROOT/fuzz/regressions/$t"
  mkdir -p "$corpus" "$artifacts"
  if compgen -G "$regressions/*" >/dev/null; then
    log "$t: replaying $(ls "$regressions" | wc -l) regression input(s)"
    if ! cargo fuzz run -s none "$t" "$regressions"/* -- -runs=1 >"$STATE/fuzz-$t.log" 2>&1; then
      tail -30 "$STATE/fuzz-$t.log"; log "FAIL $t: a regression input crashes again"; failed=1; continue
    fi
  fi
  seeds=("$corpus")
  [ -d "$regressions" ] && seeds+=("$regressions")
  log "$t: fuzzing for ${SECONDS_PER_TARGET}s"
  if cargo fuzz run -s none "$t" "${seeds[@]}" -- \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$STATE/fuzz-$t.log" 2>&1; then
    runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$STATE/fuzz-$t.log" | tail -1 | grep -o '[0-9]*$' || echo '?')
    log "ok   $t: $runs inputs, corpus $(ls "$corpus" | wc -l) files"
  else
    tail -40 "$STATE/fuzz-$t.log"
    log "FAIL $t: crash input in $artifacts/ (copy it to fuzz/regressions/$t/ with the fix)"
    failed=1
  fi
done
exit $failed
