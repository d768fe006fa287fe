#!/usr/bin/env bash
# The miniature production cluster on loopback (issue #15), idempotent, on a
# fresh machine (installs what is missing, like deploy/local/up.sh):
#
#   deploy/cluster/up.sh
#
# - Kafka: 3 KRaft nodes (brokers and controllers), replication factor 3,
#   min.insync.replicas 2;
# - ClickHouse: one shard of two replicas (cluster `smartlinks`),
#   coordinated by ZooKeeper (Debian's), replicated tables behind
#   Distributed ones (CLICKHOUSE_CLUSTER);
# - FerretDB on PostgreSQL (Debian's), its production backend;
# - HAProxy (Debian's) in front of 2 edges and 2 apis, writing the
#   forwarded-for header the edges trust;
# - 2 ingests in one consumer group, 2 aggregators of which one works
#   (leader lease in MongoDB).
# `migrate` creates the topics, the cluster's tables and the indexes first.
# Ports: deploy/cluster/lib.sh; state and logs: $STATE/cluster.
source "$(dirname "$0")/lib.sh"

ensure_build_deps
install_data
log "cluster: building the stages (release)"
(cd "$ROOT" && cargo build --release --locked -p edge -p ingest -p aggregator -p api -p migrate -p benches \
  --bin edge --bin ingest --bin aggregator --bin api --bin migrate --bin loadgen) 2>&1 | tail -3
"$ROOT/deploy/local/web.sh"
[ -s "$STATE/api-operator-key" ] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/api-operator-key")
if [ ! -s "$STATE/api-pii-keys" ]; then
  (umask 077 && printf 'API_PII_KEYS=local1:%s\nAPI_BLIND_INDEX_KEY=%s\n' "$(head -c 32 /dev/urandom | base64)" \
    "$(head -c 32 /dev/urandom | base64)" >"$STATE/api-pii-keys")
fi

start_zookeeper
start_clickhouse_replica 0
start_clickhouse_replica 1
for i in 0 1 2; do start_kafka_broker "$i"; done
for i in 0 1 2; do wait_kafka_broker "$i"; done
start_postgres
start_ferretdb_pg

log "migrate: topics (replication 3), the cluster's tables, indexes"
# shellcheck disable=SC2046
env $(stage_env 0) "$CARGO_TARGET_DIR/release/migrate" >"$CSTATE/logs/migrate.log" 2>&1 ||
  die "migrate failed on the cluster" "$CSTATE/logs/migrate.log"
grep -E '^(kafka|clickhouse)' "$CSTATE/logs/migrate.log" | head -4

for i in 0 1; do start_edge "$i"; done
for i in 0 1; do start_api "$i"; done
for i in 0 1; do start_ingest "$i"; done
for i in 0 1; do start_aggregator "$i"; done
start_haproxy
"$(dirname "$0")/status.sh"
