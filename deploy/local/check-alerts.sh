#!/usr/bin/env bash
# Checks the alerting as code: Prometheus rules parse (`promtool check
# rules`), their unit tests pass (`promtool test rules`), the Prometheus and
# Alertmanager configurations are valid, and every alert has a runbook at
# the path its `runbook_url` names. Run by deploy/local/test.sh.
source "$(dirname "$0")/lib.sh"

install_prometheus
P="$ROOT/deploy/prometheus"
rc=0
promtool check rules "$P"/rules/*.yml >/dev/null || rc=1
(cd "$P" && promtool test rules tests/*.yml) || rc=1
tmp=$(mktemp -d)
sed "s#@DEPLOY@#$ROOT/deploy#g" "$P/prometheus.yml.in" >"$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml" >/dev/null || rc=1
sed "s#@STATE@#$STATE#g" "$P/alertmanager.yml.in" >"$tmp/alertmanager.yml"
amtool check-config "$tmp/alertmanager.yml" >/dev/null || rc=1
rm -rf "$tmp"
for alert in $(sed -n 's/^ *- alert: *//p' "$P"/rules/*.yml); do
  url=$(grep -A12 -- "- alert: $alert\$" "$P"/rules/*.yml | sed -n 's/.*runbook_url: *"\(.*\)"/\1/p' | head -1)
  if [ "$url" != "deploy/runbooks/$alert.md" ] || [ ! -s "$ROOT/$url" ]; then
    echo "alert $alert: runbook_url '$url' is not an existing deploy/runbooks/$alert.md" >&2
    rc=1
  fi
done
[ $rc -eq 0 ] && log "alerts: rules, unit tests, configs and runbooks OK"
exit $rc
