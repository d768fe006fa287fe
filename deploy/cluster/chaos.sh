#!/usr/bin/env bash
# Chaos under load on the loopback cluster (issue #15), bounded in time
# (~4 min with the catch-up):
#
#   deploy/cluster/chaos.sh [SECONDS_OF_LOAD]      (default 150)
#
# While the load generator sends LOADGEN_RATE visits/s (default 40) through
# the balancer, one after the other: kill -9 a Kafka broker, a ClickHouse
# replica, an ingest, the leading aggregator and an edge, and stop FerretDB
# for 30 s; each is started again after its outage. Meanwhile a probe asks
# the balancer every 0.2 s (an unknown host: the edge's neutral 404, no
# event) and the ingests' consumer lag is sampled every second.
# Afterwards: the load generator's own check (the API and the rollups show
# exactly what was answered; a request left unanswered by a killed edge may
# or may not have been recorded, and is reported), the share of requests the
# balancer answered (>= 99.9% required), and what each fault did to the
# probe's latency and to the consumer lag.
source "$(dirname "$0")/lib.sh"

LOAD_SECS=${1:-150}
RATE=${LOADGEN_RATE:-40}
OUT="$CSTATE/chaos"
rm -rf "$OUT" && mkdir -p "$OUT"
"$CLUSTER_DIR/up.sh" >"$OUT/up.log" 2>&1 || die "cluster: up failed" "$OUT/up.log"

# Balancer counters before the run (the frontend's answers so far).
stats() { curl -fsS "http://127.0.0.1:$LB_STATS/stats;csv" | awk -F, -v f="$1" '$1 == f && $2 == "FRONTEND" {print $49, $44}'; }
read -r req0 fivexx0 < <(stats edge)

# The probe and the lag sampler.
(
  while :; do
    printf '%s %s\n' "$(date +%s%3N)" "$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}' \
      -H 'Host: chaos-probe.invalid' "http://127.0.0.1:$LB_EDGE/probe")"
    sleep 0.2
  done
) >"$OUT/probe.log" 2>/dev/null &
probe=$!
(
  while :; do
    lag=0
    for p in "${INGEST_ADMIN[@]}"; do
      l=$(curl -fsS --max-time 1 "http://127.0.0.1:$p/metrics" 2>/dev/null | awk '/^ingest_consumer_lag/ {s += $2} END {print s + 0}')
      lag=$((lag + ${l:-0}))
    done
    printf '%s %s\n' "$(date +%s%3N)" "$lag"
    sleep 1
  done
) >"$OUT/lag.log" 2>/dev/null &
sampler=$!
trap 'kill $probe $sampler 2>/dev/null || true' EXIT

log "chaos: $LOAD_SECS s of load at $RATE visits/s through the balancer"
# shellcheck disable=SC2046
env $(stage_env 0) LOADGEN_EDGE="http://127.0.0.1:$LB_EDGE" LOADGEN_API="http://127.0.0.1:$LB_API" \
  API_OPERATOR_KEY="$(cat "$STATE/api-operator-key")" LOADGEN_KEY_FILE="$CSTATE/demo-tenant-key" \
  LOADGEN_RATE="$RATE" LOADGEN_CATCH_UP_SECS=300 LOADGEN_ALLOW_UNANSWERED=1 \
  "$CARGO_TARGET_DIR/release/loadgen" "$((LOAD_SECS * RATE))" 16 >"$OUT/loadgen.log" 2>&1 &
load=$!
t0=$(date +%s)
at() { local wait=$((t0 + $1 - $(date +%s))); [ "$wait" -gt 0 ] && sleep "$wait"; return 0; }
mark() { printf '%s %s\n' "$(date +%s%3N)" "$1" >>"$OUT/faults.log"; log "chaos: $1"; }
# The index of the aggregator holding the lease (0 when none answers).
leader() {
  local i
  for i in 0 1; do
    if [ "$(curl -fsS --max-time 2 "http://127.0.0.1:${AGGREGATOR_ADMIN[$i]}/metrics" 2>/dev/null |
      awk '/^aggregator_leader /{print $2}')" = 1 ]; then
      echo "$i"
      return 0
    fi
  done
  echo 0
}

at 10;  mark "kill -9 kafka-2";        cstop kafka-2 KILL
at 30;  mark "restart kafka-2";        start_kafka_broker 1 >/dev/null; wait_kafka_broker 1
at 40;  mark "kill -9 clickhouse-r2";  cstop clickhouse-r2 KILL
at 60;  mark "restart clickhouse-r2";  start_clickhouse_replica 1 >/dev/null
at 70;  mark "kill -9 ingest-1";       cstop ingest-1 KILL
at 80;  mark "restart ingest-1";       start_ingest 0 >/dev/null
at 85;  lead=$(leader)
        mark "kill -9 aggregator-$((lead + 1)) (the leader)"; cstop "aggregator-$((lead + 1))" KILL
at 95;  mark "restart aggregator-$((lead + 1))"; start_aggregator "$lead" >/dev/null
at 100; mark "kill -9 edge-1";         cstop edge-1 KILL
at 105; mark "restart edge-1";         start_edge 0 >/dev/null
at 110; mark "stop ferretdb (30 s)";   cstop ferretdb
at 140; mark "start ferretdb";         start_ferretdb_pg >/dev/null
mark "faults over; waiting for the load generator's check"
rc=0
wait "$load" || rc=$?
read -r req1 fivexx1 < <(stats edge)
kill $probe $sampler 2>/dev/null || true

tail -n 20 "$OUT/loadgen.log" | grep -E '^(sent|API|daily|unanswered|OK|Error)' || true
python3 - "$OUT" "$((req1 - req0))" "$((fivexx1 - fivexx0))" <<'PY'
import statistics, sys
out, reqs, fails = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
probes = []
for line in open(f"{out}/probe.log"):
    p = line.split()
    if len(p) == 3:
        probes.append((int(p[0]), p[1], float(p[2]) * 1000))
lags = [(int(a), int(b)) for a, b in (l.split() for l in open(f"{out}/lag.log") if len(l.split()) == 2)]
faults = [(int(l.split(" ", 1)[0]), l.split(" ", 1)[1].strip()) for l in open(f"{out}/faults.log")]
def window(t0, t1):
    ps = [p for p in probes if t0 <= p[0] < t1]
    ok = [p[2] for p in ps if p[1] == "404"]
    bad = len(ps) - len(ok)
    q = sorted(ok)
    p50 = statistics.median(q) if q else float("nan")
    p99 = q[min(len(q) - 1, int(len(q) * 0.99))] if q else float("nan")
    lag = max((l for t, l in lags if t0 <= t < t1), default=0)
    return len(ps), bad, p50, p99, lag
first = faults[0][0] if faults else probes[-1][0]
print(f"{'window':42} {'probes':>6} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} {'max lag':>8}")
n, bad, p50, p99, lag = window(probes[0][0], first)
print(f"{'before the faults':42} {n:6} {bad:6} {p50:7.1f} {p99:7.1f} {lag:8}")
for i, (t, what) in enumerate(faults[:-1]):
    end = faults[i + 1][0]
    n, bad, p50, p99, lag = window(t, end)
    print(f"{what:42} {n:6} {bad:6} {p50:7.1f} {p99:7.1f} {lag:8}")
answered = 1 - fails / reqs if reqs else 0
print(f"balancer: {reqs} requests to the edges, {fails} answered 5xx: {answered:.4%} answered (required >= 99.9%)")
sys.exit(0 if answered >= 0.999 else 3)
PY
share=$?
[ "$rc" -eq 0 ] || die "chaos: the load generator's check failed (rc $rc)" "$OUT/loadgen.log"
[ "$share" -eq 0 ] || die "chaos: the balancer answered less than 99.9% of requests"
log "chaos: OK (logs in $OUT)"
