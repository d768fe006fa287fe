#!/usr/bin/env bash
# CPU profiles of the hot paths as flamegraphs (issue #17): where the edge's
# redirect, ingest's enrichment and ingest end to end spend their time.
#
#   benches/profile.sh [edge|ingest|ingest-e2e]...   (default: edge, ingest)
#
# Builds the benches in release with line tables (its own target dir, so
# the normal release build is untouched), samples the process with Debian's
# `perf` (DWARF call graphs, 499 Hz) while it is loaded, and folds the
# samples into SVG flamegraphs with `inferno` (crates.io):
# benches/flamegraphs/<name>.svg, committed with the figures they explain.
# Needs the local stack (deploy/local/up.sh), perf and root or
# kernel.perf_event_paranoid <= 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/local/lib.sh"

command -v perf >/dev/null || apt_install linux-perf
if ! command -v inferno-flamegraph >/dev/null; then
  log "installing inferno from crates.io"
  cargo install inferno --locked --version 0.12.3 --quiet
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(edge ingest)
"$ROOT/deploy/local/up.sh" >/dev/null
cd "$ROOT"
export CARGO_TARGET_DIR="$CACHE/target-profile" CARGO_PROFILE_RELEASE_DEBUG=line-tables-only RUST_LOG=warn
log "building the benches (release + line tables)"
cargo build --release --locked -q -p benches --bins
BIN="$CARGO_TARGET_DIR/release"
OUT="$ROOT/benches/flamegraphs"
mkdir -p "$OUT"

# profile NAME SECONDS COMMAND...: runs COMMAND, samples it for SECONDS
# from its "measuring" line on stderr, folds the samples into NAME.svg.
profile() {
  local name=$1 secs=$2
  shift 2
  local log="$STATE/profile-$name.log" data="$STATE/profile-$name.perf"
  "$@" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do grep -q measuring "$log" && break; sleep 0.1; done
  grep -q measuring "$log" || die "$name: never started measuring ($log)"
  perf record -F 499 --call-graph dwarf,16384 -o "$data" -p "$pid" -- sleep "$secs" >/dev/null 2>&1
  wait "$pid" || die "$name: the bench failed ($log)"
  # The folded stacks stay in $STATE for queries (`grep 'edge::server::send' …`).
  perf script -i "$data" 2>/dev/null | inferno-collapse-perf >"$STATE/profile-$name.folded"
  inferno-flamegraph --title "$name" <"$STATE/profile-$name.folded" >"$OUT/$name.svg"
  rm -f "$data"
  log "$name: $OUT/$name.svg ($(grep -m1 '^|' "$log" >/dev/null && grep '^| edge\|^| parse' "$log" | head -1))"
}

for t in "${targets[@]}"; do
  case $t in
    edge) profile edge-redirect 8 env BENCH_PROFILE=1 "$BIN/edge_redirect" 10 64 ;;
    ingest) profile ingest-enrich 6 env BENCH_PROFILE=1 "$BIN/ingest_throughput" 400000 ;;
    ingest-e2e) profile ingest-e2e 6 env BENCH_PROFILE=e2e "$BIN/ingest_throughput" 1500000 ;;
    *) die "unknown target $t (edge, ingest, ingest-e2e)" ;;
  esac
done
