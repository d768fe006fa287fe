#!/usr/bin/env bash
# Stops the loopback cluster (deploy/cluster/up.sh); its data stays in $STATE/cluster.
source "$(dirname "$0")/lib.sh"
for name in haproxy edge-1 edge-2 api-1 api-2 ingest-1 ingest-2 aggregator-1 aggregator-2 \
  ferretdb postgres kafka-3 kafka-2 kafka-1 clickhouse-r2 clickhouse-r1 zookeeper; do
  cpid_alive "$name" && log "$name: stopping"
  cstop "$name"
done
