#!/usr/bin/env bash
# An outage drill against the running demo stack (deploy/local/demo.sh first):
# stops ClickHouse, sends traffic so ingest's writes fail, waits for the
# alert IngestClickHouseWriteFailing to fire in Prometheus and for its email
# to reach the operators (Alertmanager → POST /v1/ops/alerts → outbox),
# restarts ClickHouse, then waits for the alert to resolve and for every
# event sent during the outage to be counted (nothing lost: ingest commits
# offsets only after ClickHouse took the batch). About 3 minutes.
source "$(dirname "$0")/lib.sh"

prom_alert_state() {
  curl -fsS --max-time 5 http://127.0.0.1:9090/api/v1/alerts | python3 -c 'import json,sys
a=[x for x in json.load(sys.stdin)["data"]["alerts"] if x["labels"]["alertname"]=="IngestClickHouseWriteFailing"]
print(a[0]["state"] if a else "inactive")'
}
# wait_for SECONDS WHAT LOGFILE CMD...: lib.sh's wait_until (fails with the
# log's tail), then says it happened.
wait_for() {
  wait_until "$1" "chaos: $2" "$3" "${@:4}"
  log "chaos: $2"
}
for s in edge ingest api; do pid_alive "$s" || die "chaos: $s is not running (run deploy/local/demo.sh first)"; done
pid_alive clickhouse \
  || die "chaos: the ClickHouse on 8123 was not started by this stack ($STATE/clickhouse.pid): it cannot be stopped here"
outbox="$STATE/outbox"
alert_mails() { { grep -l "IngestClickHouseWriteFailing" "$outbox"/*.eml 2>/dev/null || true; } | wc -l; }
mails_before=$(alert_mails)
written() { curl -fsS http://127.0.0.1:9181/metrics | sed -n 's/^ingest_written_total \([0-9]*\)$/\1/p'; }
before=$(written)

log "chaos: stopping ClickHouse"
stop clickhouse 30
for i in $(seq 1 200); do
  # One client IP per visit (the edge trusts X-Forwarded-For from loopback), below the per-IP rate limit.
  curl -s -o /dev/null -H 'Host: demo.smartlinks.local' -H "X-Forwarded-For: 198.51.100.$((i % 250 + 1))" \
    "http://127.0.0.1:8080/jiro-in-your-light?chaos=$i"
done
log "chaos: 200 views sent during the outage"
firing() { [ "$(prom_alert_state)" = firing ]; }
wait_for 180 "IngestClickHouseWriteFailing is firing" "$STATE/logs/ingest.log" firing
mailed() { [ "$(alert_mails)" -gt "$mails_before" ]; }
wait_for 120 "the operators got the alert by email ($outbox)" "$STATE/alertmanager/server.log" mailed

log "chaos: starting ClickHouse again"
start_clickhouse
resolved() { [ "$(prom_alert_state)" = inactive ]; }
wait_for 240 "IngestClickHouseWriteFailing resolved" "$STATE/logs/ingest.log" resolved
caught_up() { [ "$(written)" -ge $((before + 200)) ]; }
wait_for 120 "the 200 views of the outage are written (nothing lost)" "$STATE/logs/ingest.log" caught_up
log "chaos: OK"
