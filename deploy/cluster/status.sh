#!/usr/bin/env bash
# What of the loopback cluster runs (deploy/cluster/up.sh).
source "$(dirname "$0")/lib.sh"
printf '%-14s %-6s %s\n' PROCESS STATE NOTE
for name in zookeeper clickhouse-r1 clickhouse-r2 kafka-1 kafka-2 kafka-3 postgres ferretdb \
  edge-1 edge-2 api-1 api-2 ingest-1 ingest-2 aggregator-1 aggregator-2 haproxy; do
  note=""
  case $name in
    aggregator-*) i=${name#aggregator-}
      note="leader=$(curl -fsS --max-time 2 "http://127.0.0.1:${AGGREGATOR_ADMIN[$((i - 1))]}/metrics" 2>/dev/null |
        awk '/^aggregator_leader /{print $2}')" ;;
  esac
  if cpid_alive "$name"; then printf '%-14s %-6s %s\n' "$name" up "$note"; else printf '%-14s %-6s\n' "$name" down; fi
done
echo "balancer: edges http://127.0.0.1:$LB_EDGE, apis http://127.0.0.1:$LB_API, stats http://127.0.0.1:$LB_STATS/stats"
