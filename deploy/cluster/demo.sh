#!/usr/bin/env bash
# The main job on the loopback cluster (issue #15): brings the cluster up
# (deploy/cluster/up.sh), then runs the same load generator as the local
# demo through the balancer (edges on :8090, apis on :8091) and checks the
# same exact totals: the API's numbers = what was sent, MongoDB's rollups =
# ClickHouse's (read through the Distributed tables).
#
#   deploy/cluster/demo.sh [VISITS]      (default 3000)
source "$(dirname "$0")/lib.sh"

VISITS=${1:-3000}
"$CLUSTER_DIR/up.sh"
log "cluster demo: $VISITS visits through the balancer"
# shellcheck disable=SC2046
env $(stage_env 0) LOADGEN_EDGE="http://127.0.0.1:$LB_EDGE" LOADGEN_API="http://127.0.0.1:$LB_API" \
  API_OPERATOR_KEY="$(cat "$STATE/api-operator-key")" LOADGEN_KEY_FILE="$CSTATE/demo-tenant-key" \
  LOADGEN_RETURN_AFTER_MS=3000 "$CARGO_TARGET_DIR/release/loadgen" "$VISITS" 32
cat <<EOT

The cluster keeps running (deploy/cluster/status.sh; stop with deploy/cluster/down.sh).
  landing page through the balancer: curl -H 'Host: demo.smartlinks.local' http://127.0.0.1:$LB_EDGE/jiro-in-your-light
  API through the balancer:          curl -H "Authorization: Bearer \$(cat $CSTATE/demo-tenant-key)" http://127.0.0.1:$LB_API/v1/analytics/overview
  dashboard:                         http://127.0.0.1:$LB_API/app/
  balancer stats:                    http://127.0.0.1:$LB_STATS/stats
EOT
