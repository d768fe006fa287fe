#!/usr/bin/env bash
# Stops the local stack by PID (SIGTERM, then SIGKILL after a grace period).
# Data stays in $SMARTLINKS_STATE_DIR (default .state/); `up.sh` starts it again.
source "$(dirname "$0")/lib.sh"

for svc in api aggregator forwarder platform-stub ingest edge; do
  pid_alive "$svc" && stop "$svc" 30
done
stop alertmanager 10
stop prometheus 20
stop ferretdb 20
stop clickhouse 30
stop kafka 60
