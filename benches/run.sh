#!/usr/bin/env bash
# Every benchmark in one command, and every ratio in one table (issue #17).
#
#   benches/run.sh [quick]
#
# Starts the local stack (deploy/local/up.sh, idempotent), builds the
# benches in release, runs each against the real engines and prints, at the
# end, one table: what we measured, the ceiling measured in the same run
# (bare hyper, raw ClickHouse insert, the plain redirect...), their ratio
# and the issue's target. `quick` shortens every run (a smoke test of the
# command, not figures to keep). Full run: about 10 minutes on 2 cores
# (analytics_scale with 1M events; its 10M figures are a separate command,
# benches/README.md). Logs: $STATE/bench-<name>.log. Record results with
# their date in benches/README.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/local/lib.sh"

QUICK=${1:-}
"$ROOT/deploy/local/up.sh"
"$ROOT/deploy/local/bot-data.sh" # the public crawler and browser lists bot_recall reads
cd "$ROOT"
log "building the benches (release)"
cargo build --release --locked -q -p benches --bins
BIN="$CARGO_TARGET_DIR/release"
export RUST_LOG=warn

if [ "$QUICK" = quick ]; then
  runs=("edge_redirect 2 32" "ingest_throughput 20000" "analytics_scale 100000 1" "bot_recall")
else
  runs=("edge_redirect 10 64" "ingest_throughput 600000" "analytics_scale 1000000 1" "bot_recall")
fi
failed=()
for r in "${runs[@]}"; do
  name=${r%% *}
  log "bench: $r"
  # shellcheck disable=SC2086  # arguments split on purpose
  if ! "$BIN/$name" ${r#"$name"} >"$STATE/bench-$name.log" 2>&1; then
    failed+=("$name")
    tail -5 "$STATE/bench-$name.log" >&2
  fi
done

echo
echo "## benches/run.sh $(date -u +%Y-%m-%d) ${QUICK:+(quick)}"
echo
echo "| bench | measure | ours | ceiling (same run) | unit | ratio | target |"
echo "|---|---|---|---|---|---|---|"
for r in "${runs[@]}"; do
  name=${r%% *}
  { grep -h '^RATIO|' "$STATE/bench-$name.log" 2>/dev/null || echo "RATIO|(no result: see $STATE/bench-$name.log)|0|0|-|-"; } |
    while IFS='|' read -r _ what ours ceiling unit target; do
      ratio=$(awk -v a="$ours" -v b="$ceiling" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }')
      echo "| $name | $what | $ours | $ceiling | $unit | $ratio | $target |"
    done
done
if [ ${#failed[@]} -gt 0 ]; then
  die "benches failed: ${failed[*]} (logs in $STATE/bench-<name>.log)"
fi
