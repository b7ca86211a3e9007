#!/usr/bin/env bash
# Local Redis, PostgreSQL and Kafka dev broker for prewarm's demo, tests and benchmarks.
# Everything lives under .run/ of the checkout, on ports of its own (never 6379/5432).
#   scripts/services.sh start|stop|running redis|redis-cluster|postgres|kafka
#   scripts/services.sh env      # prints the variables tests and the demo read
#   PREWARM_DEV_KAFKA=noida scripts/services.sh start kafka   # an independent broker instead
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${PREWARM_DEV_RUN_DIR:-$ROOT/.run} # tests start private servers under a directory of their own
REDIS_PORT=${PREWARM_DEV_REDIS_PORT:-16379}
PG_PORT=${PREWARM_DEV_POSTGRES_PORT:-15432}
# Redis Cluster: 3 primaries and 3 replicas on six ports from this one; with
# PREWARM_DEV_REDIS_CLUSTER_REPLICAS=0, 3 primaries alone on three (the benchmarks' like for like
# with the single node, which has no replica either).
CLUSTER_REPLICAS=${PREWARM_DEV_REDIS_CLUSTER_REPLICAS:-1}
[ "$CLUSTER_REPLICAS" = 0 ] || [ "$CLUSTER_REPLICAS" = 1 ] ||
  { echo "services: PREWARM_DEV_REDIS_CLUSTER_REPLICAS must be 0 or 1, not '$CLUSTER_REPLICAS'" >&2; exit 1; }
CLUSTER_PORT=${PREWARM_DEV_REDIS_CLUSTER_PORT:-17001}
CLUSTER_PORTS=${PREWARM_DEV_REDIS_CLUSTER_PORTS:-$(seq "$CLUSTER_PORT" $((CLUSTER_PORT + 2 + 3 * CLUSTER_REPLICAS)))} # or of one's own
CLUSTER_PORT=${CLUSTER_PORTS%%[[:space:]]*}
# Each node's cluster bus port: its port + 10000 unless listed (a private cluster's ports, whose
# + 10000 could fall in the ephemeral range, where an outgoing connection may hold it).
CLUSTER_BUS_PORTS=${PREWARM_DEV_REDIS_CLUSTER_BUS_PORTS:-}
DEV_PASSWORD=prewarm-dev # local throwaway services only
PREWARMCTL=${PREWARMCTL:-$ROOT/.build/debug/prewarmctl}
# Which Kafka `start kafka` runs: librdkafka's mock cluster (`prewarmctl dev-broker`), or
# noida-db, an independent Kafka-protocol broker (installed by `make deps` under .run/noida).
KAFKA_KIND=${PREWARM_DEV_KAFKA:-mock}
NOIDA_PORT=${PREWARM_DEV_NOIDA_PORT:-19092}
NOIDA_VENV=$ROOT/.run/noida/venv
# Each kind in a folder of its own, so a mock left running never stands in for noida.
KAFKA_DIR=$RUN/kafka
[ "$KAFKA_KIND" = mock ] || KAFKA_DIR=$RUN/kafka-$KAFKA_KIND

die() { echo "services: $*" >&2; exit 1; }

# PostgreSQL refuses to run as root, so as root it runs as 'postgres', which must be able to
# reach its folder; a checkout under a private home is not reachable, so fall back to /tmp.
pg_dir() {
  local dir=$RUN/postgres
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$dir"
    if ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
      dir=${TMPDIR:-/tmp}/prewarm-postgres-$(printf '%s' "$RUN" | cksum | cut -d' ' -f1)
    fi
  fi
  echo "$dir"
}
PG_DIR=$(pg_dir)
# From /, so that PostgreSQL's tools do not complain they cannot enter a checkout under a
# private home ("could not change directory ... Permission denied"); every path is absolute.
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bin" ] || die "no PostgreSQL server found under /usr/lib/postgresql (run: make deps)"
  echo "$bin"
}

wait_for() { # seconds, description, command...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up in time"
    sleep 0.1
  done
}

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --no-auth-warning -a "$DEV_PASSWORD" "$@"; }
cluster_cli() { # port, arguments
  local port=$1; shift
  redis-cli -h 127.0.0.1 -p "$port" --no-auth-warning -a "$DEV_PASSWORD" "$@"
}
cluster_nodes() { local port list=""; for port in $CLUSTER_PORTS; do list="$list,127.0.0.1:$port"; done; echo "${list#,}"; }

running() {
  case $1 in
    redis) redis_cli ping 2>/dev/null | grep -q PONG ;;
    redis-cluster) cluster_cli "$CLUSTER_PORT" cluster info 2>/dev/null | grep -q 'cluster_state:ok' ;;
    postgres) [ -f "$PG_DIR/data/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1 ;;
    kafka) [ -f "$KAFKA_DIR/pid" ] && kill -0 "$(cat "$KAFKA_DIR/pid")" 2>/dev/null && [ -s "$KAFKA_DIR/bootstrap" ] ;;
    *) die "unknown service '$1' (redis, redis-cluster, postgres, kafka)" ;;
  esac
}

# Six nodes of Debian's redis-server in cluster mode, each in a folder of its own (its
# nodes.conf), a 5 s node timeout (a failover takes seconds, and a loaded machine does not
# fail a node over by mistake), joined by redis-cli: 3 primaries, a replica each. Started
# empty, as the single node is. A large replication backlog and no output limit for replicas:
# a bulk write (a million KA keys in seconds) would otherwise outrun them and force full
# resyncs, each a fork and a copy of the dataset on the same two cores.
start_cluster() {
  local port bus=() index=0
  read -r -a bus <<<"$CLUSTER_BUS_PORTS"
  for port in $CLUSTER_PORTS; do
    rm -rf "$RUN/redis-cluster/$port"
    mkdir -p "$RUN/redis-cluster/$port"
    redis-server --port "$port" --cluster-port "${bus[$index]:-$((port + 10000))}" \
      --bind 127.0.0.1 --requirepass "$DEV_PASSWORD" --masterauth "$DEV_PASSWORD" \
      --cluster-enabled yes --cluster-config-file "$RUN/redis-cluster/$port/nodes.conf" \
      --cluster-node-timeout 5000 --save '' --appendonly no --daemonize yes --dir "$RUN/redis-cluster/$port" \
      --repl-backlog-size 256mb --client-output-buffer-limit 'replica 0 0 0' \
      --pidfile "$RUN/redis-cluster/$port/redis.pid" --logfile "$RUN/redis-cluster/$port/redis.log"
    index=$((index + 1))
  done
  for port in $CLUSTER_PORTS; do wait_for 10 "redis on port $port" cluster_cli "$port" ping; done
  # shellcheck disable=SC2046
  redis-cli --no-auth-warning -a "$DEV_PASSWORD" --cluster create $(cluster_nodes | tr ',' ' ') \
    --cluster-replicas "$CLUSTER_REPLICAS" --cluster-yes >"$RUN/redis-cluster/create.log" 2>&1 ||
    die "redis-cli --cluster create failed: $(tail -n 3 "$RUN/redis-cluster/create.log")"
  wait_for 30 "the Redis cluster" running redis-cluster
  wait_for 60 "the Redis cluster's replicas in sync" cluster_synced
}

# Every node agrees the cluster is whole and every replica's link to its primary is up (a
# replica attaches and syncs after the cluster is made).
cluster_synced() {
  local port replicas=0
  for port in $CLUSTER_PORTS; do
    cluster_cli "$port" cluster info | grep -q 'cluster_state:ok' || return 1
    if cluster_cli "$port" role | head -n 1 | grep -q slave; then
      cluster_cli "$port" info replication | grep -q 'master_link_status:up' || return 1
      replicas=$((replicas + 1))
    fi
  done
  [ "$replicas" -eq $((3 * CLUSTER_REPLICAS)) ]
}

start() {
  case $1 in
    redis)
      command -v redis-server >/dev/null || die "redis-server is not installed (run: make deps)"
      mkdir -p "$RUN/redis"
      redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass "$DEV_PASSWORD" \
        --unixsocket "$RUN/redis/redis.sock" --unixsocketperm 700 \
        --save '' --appendonly no --daemonize yes --dir "$RUN/redis" \
        --pidfile "$RUN/redis/redis.pid" --logfile "$RUN/redis/redis.log"
      wait_for 10 "redis on port $REDIS_PORT" running redis ;;
    redis-cluster)
      command -v redis-server >/dev/null || die "redis-server is not installed (run: make deps)"
      start_cluster ;;
    postgres)
      local bin; bin=$(pg_bin)
      mkdir -p "$PG_DIR/sock"
      [ "$(id -u)" = 0 ] && chown -R postgres "$PG_DIR"
      if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        printf '%s\n' "$DEV_PASSWORD" > "$PG_DIR/pwfile"
        [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR/pwfile"
        as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres --pwfile="$PG_DIR/pwfile" \
          --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
          || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
        rm -f "$PG_DIR/pwfile"
      fi
      as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 \
        -o "-p $PG_PORT -k $PG_DIR/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null \
        || { tail -20 "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
      local psql=(as_pg psql -h "$PG_DIR/sock" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
      if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'prewarm'")" != 1 ]; then
        "${psql[@]}" -d postgres -c "CREATE ROLE prewarm LOGIN PASSWORD '$DEV_PASSWORD'" \
          -c "CREATE DATABASE prewarm OWNER prewarm"
      fi
      # The tests' own database (make test), so the demo never shows their records.
      if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'prewarm_test'")" != 1 ]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE prewarm_test OWNER prewarm"
      fi ;;
    kafka)
      [ -x "$PREWARMCTL" ] || die "$PREWARMCTL is not built (run: make build)"
      mkdir -p "$KAFKA_DIR"
      rm -f "$KAFKA_DIR/bootstrap" "$KAFKA_DIR/control"
      case $KAFKA_KIND in
        mock) ;;
        noida) start_noida; echo "services: started kafka (noida-db)"; return ;;
        *) die "PREWARM_DEV_KAFKA must be mock or noida, not '$KAFKA_KIND'" ;;
      esac
      # A copy of its own: a rebuild rewrites .build/debug/prewarmctl in place, which can
      # wedge a broker still running from it.
      cp "$PREWARMCTL" "$KAFKA_DIR/prewarmctl"
      nohup "$KAFKA_DIR/prewarmctl" dev-broker --brokers 3 --bootstrap-file "$KAFKA_DIR/bootstrap" \
        --control-file "$KAFKA_DIR/control" >"$KAFKA_DIR/broker.log" 2>&1 </dev/null &
      echo $! > "$KAFKA_DIR/pid"
      wait_for 30 "the Kafka dev broker" running kafka ;;
    *) die "unknown service '$1' (redis, redis-cluster, postgres, kafka)" ;;
  esac
  echo "services: started $1"
}

# noida-db on its port, with a data folder of its own made fresh (as the mock starts empty),
# and the catalog's topics created through its admin API (its auto-created topics have one
# partition); the server binary itself is run, not its Python wrapper, so its pid is the
# broker's.
start_noida() {
  local binary
  binary=$(ls "$NOIDA_VENV"/lib/python3*/site-packages/noida_db/noida-db 2>/dev/null | head -n 1)
  [ -n "$binary" ] || die "noida-db is not installed under $NOIDA_VENV (run: make deps)"
  # PREWARM_DEV_KAFKA_KEEP_DATA=1: a restart keeping its topics and groups (make chaos).
  [ -n "${PREWARM_DEV_KAFKA_KEEP_DATA:-}" ] || rm -rf "$KAFKA_DIR/noida-data"
  mkdir -p "$KAFKA_DIR/noida-data"
  nohup "$binary" start --data-dir "$KAFKA_DIR/noida-data" --host 127.0.0.1 --only kafka \
    --kafka-port "$NOIDA_PORT" >"$KAFKA_DIR/broker.log" 2>&1 </dev/null &
  echo $! > "$KAFKA_DIR/pid"
  wait_for 60 "noida-db on port $NOIDA_PORT" env PREWARM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$NOIDA_PORT" \
    PREWARM_KAFKA_BOOTSTRAP_FILE= PREWARM_LOG_LEVEL=critical "$PREWARMCTL" topics create --replication-factor 1
  echo "127.0.0.1:$NOIDA_PORT" > "$KAFKA_DIR/bootstrap"
}

stop() {
  if [ "$1" = redis-cluster ]; then # every node, whatever state the cluster is in
    local port stopped=""
    for port in $CLUSTER_PORTS; do
      cluster_cli "$port" shutdown nosave >/dev/null 2>&1 && stopped=yes
    done
    [ -z "$stopped" ] || echo "services: stopped redis-cluster"
    return 0
  fi
  running "$1" || { [ "$1" != kafka ] || rm -f "$KAFKA_DIR/pid"; return 0; }
  case $1 in
    redis) redis_cli shutdown nosave >/dev/null 2>&1 || true ;;
    postgres) as_pg "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null ;;
    kafka)
      local pid; pid=$(cat "$KAFKA_DIR/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$KAFKA_DIR/pid" "$KAFKA_DIR/bootstrap" "$KAFKA_DIR/control" ;;
  esac
  echo "services: stopped $1"
}

# Consumers against the dev brokers: librdkafka's mock holds a new member's join, past an old
# member's leave, until that member's session ends (45 s by default), and noida, restarted,
# can hold a rebalance for its whole timeout (max.poll.interval.ms, 300 s by default); so every
# worker run here (demo, tests, chaos, bench) uses a 6 s session and a 30 s rebalance timeout
# (a worker polls at least every PREWARM_LONG_BATCH_AFTER_S, 10 s, even mid-batch).
env_vars() { # the variables the workers read, pointed at these services, quoted for eval
  local name value
  while IFS='|' read -r name value; do printf "%s='%s'\n" "$name" "$value"; done <<VARS
PREWARM_REDIS_HOST|127.0.0.1
PREWARM_REDIS_PORT|$REDIS_PORT
PREWARM_REDIS_PASSWORD|$DEV_PASSWORD
PREWARM_DEV_REDIS_SOCKET|$RUN/redis/redis.sock
PREWARM_POSTGRES_URL|host=127.0.0.1 port=$PG_PORT dbname=prewarm user=prewarm
PREWARM_POSTGRES_PASSWORD|$DEV_PASSWORD
PREWARM_KAFKA_BOOTSTRAP_FILE|$KAFKA_DIR/bootstrap
PREWARM_DEV_BROKER_CONTROL_FILE|$KAFKA_DIR/control
PREWARM_DEV_KAFKA|$KAFKA_KIND
PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS|${PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS:-6000}
PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS|${PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS:-1000}
PREWARM_KAFKA_CONSUMER_MAX_POLL_INTERVAL_MS|${PREWARM_KAFKA_CONSUMER_MAX_POLL_INTERVAL_MS:-30000}
VARS
  # Set only while the cluster runs: the tests run their Redis cases on it too.
  if running redis-cluster; then printf "PREWARM_DEV_REDIS_CLUSTER_NODES='%s'\n" "$(cluster_nodes)"; fi
}

cmd=${1:-}; shift || true
case $cmd in
  start|stop|running) [ $# -gt 0 ] || die "$cmd needs a service name"; for s in "$@"; do $cmd "$s"; done ;;
  up) for s in "$@"; do running "$s" || start "$s"; done ;;
  env) env_vars ;;
  *) die "usage: $0 start|stop|running|up SERVICE... | env" ;;
esac
