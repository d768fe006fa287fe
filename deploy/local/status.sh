#!/usr/bin/env bash
# One line per service: up/down, version, address. Exits 1 when any engine is down.
source "$(dirname "$0")/lib.sh"

rc=0
line() { printf '%-11s %-5s %-28s %s\n' "$@"; }
line SERVICE STATE VERSION ADDRESS

if port_open 9092; then
  line kafka up "apache-kafka $KAFKA_VERSION" "127.0.0.1:9092 (KRaft)"
else line kafka down - 127.0.0.1:9092; rc=1; fi

if v=$(clickhouse_query "SELECT version()" 2>/dev/null); then
  line clickhouse up "clickhouse $v" "127.0.0.1:8123 http, :9000 native"
else line clickhouse down - 127.0.0.1:8123; rc=1; fi

if port_open 27017; then
  v=$(curl -fsS --max-time 3 "http://$FERRETDB_DEBUG_ADDR/debug/metrics" 2>/dev/null \
      | sed -n 's/^ferretdb_up{.*version="\([^"]*\)".*/\1/p' | head -1)
  line ferretdb up "ferretdb ${v:-$FERRETDB_VERSION} (sqlite)" "127.0.0.1:27017 mongodb-wire"
else line ferretdb down - 127.0.0.1:27017; rc=1; fi

for svc in prometheus:9090 alertmanager:9095; do
  IFS=: read -r name port <<<"$svc"
  if curl -fsS --max-time 2 "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
    line "$name" up - "127.0.0.1:$port"
  else line "$name" down - "127.0.0.1:$port"; rc=1; fi
done

for svc in edge:8080:9180 ingest:-:9181 forwarder:-:9184 aggregator:-:9182 api:8081:9183 platform-stub:9190:-; do
  IFS=: read -r name port admin <<<"$svc"
  if pid_alive "$name"; then line "$name" up - "127.0.0.1:$port admin :$admin"; fi
done
exit $rc
