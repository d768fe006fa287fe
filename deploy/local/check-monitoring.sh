#!/usr/bin/env bash
# Checks the running stack as an SRE would (run at the end of demo.sh):
#   - Prometheus scrapes every stage and itself: every target up;
#   - no alert firing;
#   - every stage's /metrics passes `promtool check metrics` and each of its
#     metric families is in the catalogue (docs/metrics.md).
source "$(dirname "$0")/lib.sh"

rc=0
prom() { curl -fsS --max-time 5 "http://127.0.0.1:9090/api/v1/$1"; }
# Targets: wait for a scrape of each (5 s interval).
deadline=$((SECONDS + 60))
while :; do
  down=$(prom targets | python3 -c 'import json,sys
t=json.load(sys.stdin)["data"]["activeTargets"]
print(" ".join(x["labels"]["job"] for x in t if x["health"] != "up") or ("none" if t else "no-targets"))')
  [ "$down" = none ] && break
  if [ $SECONDS -ge $deadline ]; then echo "prometheus: targets not up: $down" >&2; rc=1; break; fi
  sleep 2
done
[ "$down" = none ] && log "prometheus: every target up ($(prom targets | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["activeTargets"]))') targets)"
firing=$(prom alerts | python3 -c 'import json,sys
print(" ".join(sorted({a["labels"]["alertname"] for a in json.load(sys.stdin)["data"]["alerts"] if a["state"] == "firing"})))')
if [ -n "$firing" ]; then echo "prometheus: alerts firing: $firing" >&2; rc=1; else log "prometheus: no alert firing"; fi

for stage in edge:9180 ingest:9181 aggregator:9182 api:9183; do
  IFS=: read -r name port <<<"$stage"
  body=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics") || { echo "$name: /metrics unreachable" >&2; rc=1; continue; }
  if ! problems=$(printf '%s\n' "$body" | promtool check metrics 2>&1); then
    echo "$name: promtool check metrics: $problems" >&2; rc=1
  fi
  for family in $(printf '%s\n' "$body" | sed -n 's/^# TYPE \([a-zA-Z_:][a-zA-Z0-9_:]*\) .*/\1/p'); do
    grep -q "\`$family\`" "$ROOT/docs/metrics.md" || { echo "$name: $family is not in docs/metrics.md" >&2; rc=1; }
  done
done
[ $rc -eq 0 ] && log "metrics: promtool clean, every family in docs/metrics.md"
exit $rc
