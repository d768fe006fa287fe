#!/usr/bin/env bash
# The miniature production cluster on loopback (issue #15), idempotent:
#
#   deploy/cluster/up.sh
#
# ZooKeeper (Debian's), ClickHouse as one shard of two replicas (cluster
# `smartlinks`). Ports and state: deploy/cluster/lib.sh, $STATE/cluster.
source "$(dirname "$0")/lib.sh"

start_zookeeper
start_clickhouse_replica 0
start_clickhouse_replica 1
log "cluster: ClickHouse sees $(ch_query 0 "SELECT count() FROM system.clusters WHERE cluster = 'smartlinks'" | tr -d '\n') replicas of cluster smartlinks"
