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
  wait_until 60 zookeeper "$CSTATE/logs/zookeeper.log" port_open "$ZK_PORT"
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
