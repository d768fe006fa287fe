#!/usr/bin/env bash
# The tests that need the loopback cluster (issue #15), after bringing it up:
# the DDL's cluster mode on two ClickHouse replicas (migrate/tests/cluster.rs:
# the previous schema upgraded in place on every replica, deduplication
# through Distributed, the written-rows view, a mutation on every replica).
#
#   deploy/cluster/test.sh
source "$(dirname "$0")/lib.sh"
"$CLUSTER_DIR/up.sh" >"$CSTATE/logs/up.log" 2>&1 || die "cluster: up failed" "$CSTATE/logs/up.log"
cd "$ROOT"
CLUSTER_CLICKHOUSE_URL="http://127.0.0.1:${CH_HTTP[0]}" CLUSTER_CLICKHOUSE_URL_2="http://127.0.0.1:${CH_HTTP[1]}" \
  cargo test --locked -p migrate --test cluster -- --ignored
