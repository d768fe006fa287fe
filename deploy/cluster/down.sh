#!/usr/bin/env bash
# Stops the loopback cluster (deploy/cluster/up.sh); its data stays in $STATE/cluster.
source "$(dirname "$0")/lib.sh"
for name in clickhouse-r2 clickhouse-r1 zookeeper; do
  cpid_alive "$name" && log "$name: stopping"
  cstop "$name"
done
