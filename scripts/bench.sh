#!/usr/bin/env bash
# Each scenario through prewarm's wrappers, then the same work with the stock tool, in the
# same run; the ratio is wrapper time / tool time (1.0 = as fast as the tool; the tool is
# the practical limit of the client library underneath).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_COUNT:-100000}
BENCH=.build/release/prewarm-bench
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l | xargs printf '%.3f'; }
report() { printf '%-34s wrapper %8.3f s   %-22s %8.3f s   ratio %.2f\n' "$1" "$2" "$3" "$4" "$(echo "$2 / $4" | bc -l)"; }
command -v bc >/dev/null || { echo "bench: needs bc (apt-get install bc)" >&2; exit 1; }
# ka, ingest and api also run on a local 3-primary Redis Cluster (the bench starts it), in
# the same run, and print the cluster's time over the single node's (BENCH_CLUSTER=0 skips).
# The cluster is 3 primaries without replicas, started here for the run, like for like with the
# single node (no replica either): what is measured is the client's cost of the cluster, not two
# cores applying every write twice. BENCH_CLUSTER_REPLICAS=1 uses the suite's 6-node cluster.
CLUSTER_NODES=${PREWARM_DEV_REDIS_CLUSTER_NODES:-}
CLUSTER_RUN=${PREWARM_DEV_RUN_DIR:-.run}
[ "${BENCH_CLUSTER:-1}" = 1 ] || CLUSTER_NODES=
bench_cluster() { # start|stop: the primaries-only cluster under .run/bench-cluster
  PREWARM_DEV_RUN_DIR=$PWD/.run/bench-cluster PREWARM_DEV_REDIS_CLUSTER_REPLICAS=0 \
    PREWARM_DEV_REDIS_CLUSTER_PORTS="17301 17302 17303" PREWARM_DEV_REDIS_CLUSTER_BUS_PORTS="27301 27302 27303" \
    scripts/services.sh "$1" redis-cluster >/dev/null
}
if [ -n "$CLUSTER_NODES" ] && [ "${BENCH_CLUSTER_REPLICAS:-0}" = 0 ]; then
  bench_cluster stop; bench_cluster start
  CLUSTER_NODES=127.0.0.1:17301,127.0.0.1:17302,127.0.0.1:17303; CLUSTER_RUN=$PWD/.run/bench-cluster
  cluster_topology="3 primaries, no replicas"
else
  cluster_topology="3 primaries, 3 replicas"
fi
cluster_env=(PREWARM_REDIS_CLUSTER_NODES="$CLUSTER_NODES" PREWARM_REDIS_DB=0)
cluster_cli() { # node, redis-cli arguments
  redis-cli -h "${1%:*}" -p "${1#*:}" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning "${@:2}"
}
cluster_primaries() {
  local node
  for node in ${CLUSTER_NODES//,/ }; do
    cluster_cli "$node" role 2>/dev/null | head -1 | grep -q master && echo "$node"
  done
  return 0
}
cluster_flush() { local node; for node in $(cluster_primaries); do cluster_cli "$node" flushall >/dev/null; done; }
# Each primary's key count, space-separated.
cluster_sizes() { local node; for node in $(cluster_primaries); do cluster_cli "$node" dbsize; done | xargs; }
# Waits (up to a minute) until every replica has applied all its primary sent: on two cores
# the replicas fall behind during a bulk write and catch up after it, so the next
# measurement would pay for the last one's replication.
cluster_settled() {
  local node deadline=$((SECONDS + 60)) behind
  while [ $SECONDS -lt $deadline ]; do
    behind=0
    for node in ${CLUSTER_NODES//,/ }; do
      cluster_cli "$node" info replication | tr -d '\r' | awk -F'[:,=]' '
        /^master_repl_offset:/ { mine = $2 }
        /^slave[0-9]+:/ { for (i = 2; i < NF; i++) if ($i == "offset") acked[++n] = $(i + 1) }
        END { for (k = 1; k <= n; k++) if (acked[k] != mine) exit 1 }' || behind=1
      [ "$behind" = 0 ] || break
    done
    [ "$behind" = 0 ] && return 0
    sleep 0.2
  done
}
# CPU seconds used so far by the process `pid` (user and system), and by the cluster's nodes.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cluster_cpu_s() {
  local node total=0
  for node in ${CLUSTER_NODES//,/ }; do
    total=$(echo "$total + $(cpu_s "$(cat "$CLUSTER_RUN/redis-cluster/${node#*:}/redis.pid")")" | bc -l)
  done
  echo "$total"
}
# A pipeline's stage waits (`<metric>{stage=...}` seconds) from a pod's /metrics, as
# "stage=seconds ..." (stage_waits port metric > before; ... ; stage_delta before after).
stage_waits() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m "{") == 1 {
  match($0, /stage="[a-z-]+"/); printf "%s=%s ", substr($0, RSTART + 7, RLENGTH - 8), $NF }'; }
stage_delta() { # before after: "read 1.20 s, write 3.40 s" (the waits between the two)
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); was[kv[1]] = kv[2] }
    n = split(b, y, " "); out = ""; for (i = 1; i <= n; i++) { split(y[i], kv, "="); out = out sprintf("%s%s %.2f s", out == "" ? "" : ", ", kv[1], kv[2] - was[kv[1]]) }
    print out }'; }
# The median of the numbers on standard input, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
scenarios=${*:-redis postgres kafka ingest scoring api ka push}
has() { [[ " $scenarios " == *" $1 "* ]]; }
if has api || has push; then
  command -v wrk >/dev/null || { echo "bench: needs wrk (apt-get install wrk)" >&2; exit 1; }
fi
BOOT=$(cat "$PREWARM_KAFKA_BOOTSTRAP_FILE")
PGURL="$PREWARM_POSTGRES_URL password=$PREWARM_POSTGRES_PASSWORD"
echo "bench: $scenarios; release build, services on loopback, 2 cores (each scenario names its own counts)"
[ -z "$CLUSTER_NODES" ] || echo "bench: the Redis Cluster: $cluster_topology ($CLUSTER_NODES)"

if has redis; then
  w=$($BENCH redis-set --count "$N" | sed -n 's/seconds=//p')
  for i in $(seq 0 $((N - 1))); do printf 'SET bench:key:%d value-%d\r\n' "$i" "$i"; done > "$tmp/redis.txt"
  t0=$(now); redis-cli -h 127.0.0.1 -p "$PREWARM_REDIS_PORT" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning --pipe < "$tmp/redis.txt" >/dev/null; t1=$(now)
  report "redis: $N pipelined SETs" "$w" "redis-cli --pipe" "$(secs "$t0" "$t1")"
fi
if has postgres; then
  w=$($BENCH pg-copy --count "$N" --target bench_copy | sed -n 's/seconds=//p')
  seq 0 $((N - 1)) | awk '{ printf "%d\t%d\tnote-%d\n", $1, $1 % 5000, $1 }' > "$tmp/rows.tsv"
  psql "$PGURL" -qc "DROP TABLE IF EXISTS bench_copy_psql; CREATE TABLE bench_copy_psql (id bigint PRIMARY KEY, user_id bigint, note text)"
  t0=$(now); psql "$PGURL" -qc "\\copy bench_copy_psql FROM '$tmp/rows.tsv'"; t1=$(now)
  report "postgres: COPY of $N rows" "$w" "psql \\copy" "$(secs "$t0" "$t1")"
fi
if has kafka; then
  run=$(date +%s%N)  # fresh topics: both sides read from the beginning
  "$PREWARMCTL" fault --control-file "$PREWARM_DEV_BROKER_CONTROL_FILE" topic-create "bench-$run.wrapper" 12 >/dev/null
  "$PREWARMCTL" fault --control-file "$PREWARM_DEV_BROKER_CONTROL_FILE" topic-create "bench-$run.kcat" 12 >/dev/null
  w=$($BENCH kafka --count "$N" --target "bench-$run.wrapper" | sed -n 's/seconds=//p')
  for i in $(seq 0 $((N - 1))); do echo "$((i % 5000)):value-$i-0123456789"; done > "$tmp/kafka.txt"
  t0=$(now)
  kcat -P -b "$BOOT" -t "bench-$run.kcat" -K: -X acks=all -X enable.idempotence=true < "$tmp/kafka.txt"
  kcat -C -b "$BOOT" -t "bench-$run.kcat" -o beginning -e -q -c "$N" > /dev/null
  t1=$(now)
  report "kafka: $N produced + consumed" "$w" "kcat -P then -C" "$(secs "$t0" "$t1")"
fi
if has ingest; then
  # 1M store.entry.v1 events (BENCH_INGEST_COUNT) on 12 partitions, then one entry-ingest
  # process from start to every event stored and counted, beside the same I/O by the stock
  # tools one after another: kcat reading the topic, psql \copy of the rows into the 16
  # shards, redis-cli --pipe of the activity commands. BENCH_INGEST_ROUNDS rounds (3), each
  # from scratch (dev broker, tables, Redis), so a noisy moment of the machine shows as one
  # round out of line; the median is the result.
  M=${BENCH_INGEST_COUNT:-1000000}
  ROUNDS=${BENCH_INGEST_ROUNDS:-3}
  INGEST=${ENTRY_INGEST:-.build/release/entry-ingest}
  dir=$tmp/ingest; mkdir -p "$dir"
  run=$(date +%s%N); schema=; stock=; broker=; ingest_pid=
  drop_schemas() {
    [ -z "$schema" ] || psql "$PGURL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; DROP SCHEMA IF EXISTS $stock CASCADE" 2>/dev/null || true
  }
  trap 'kill $broker $ingest_pid 2>/dev/null || true; drop_schemas; rm -rf "$tmp"' EXIT
  url() { echo "$PREWARM_POSTGRES_URL options='-c search_path=$1'"; }
  redis=(redis-cli -h 127.0.0.1 -p "$PREWARM_REDIS_PORT" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning)
  # CPU seconds of a process and its reaped children (plus its live children: PostgreSQL's
  # backends), to show where the run's CPU went.
  cpu() {
    local pid=$1 ticks
    ticks=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    for child in $(pgrep -P "$pid" 2>/dev/null); do
      ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
    done
    echo "$ticks"
  }
  hz=$(getconf CLK_TCK)
  postmaster=$(head -1 "${PREWARM_DEV_RUN_DIR:-.run}/postgres/data/postmaster.pid" 2>/dev/null || echo 0)
  redis_server=$(cat "${PREWARM_DEV_RUN_DIR:-.run}/redis/redis.pid" 2>/dev/null || echo 0)
  # The same events into a schema of their own and the cluster, by the same group replayed
  # from the start (as operators replay). Odd rounds run it after the single node, even ones
  # before, so neither side always meets the other's aftermath (PostgreSQL's checkpoints,
  # autovacuum of a million rows).
  ingest_on_cluster() {
    cschema=${schema}_cluster
    psql "$PGURL" -qc "CREATE SCHEMA $cschema"
    PREWARM_POSTGRES_URL=$(url "$cschema") "$PREWARMCTL" migrate >/dev/null 2>&1
    psql "$PGURL" -qc "INSERT INTO $cschema.stores SELECT * FROM $schema.stores"
    cluster_flush
    PREWARM_KAFKA_BOOTSTRAP_FILE=$dir/bootstrap "$PREWARMCTL" offsets reset --group entry-ingest \
      --topic store.entry.v1 --to earliest >/dev/null
    port=$((18000 + RANDOM % 2000))
    t0=$(now)
    env "${cluster_env[@]}" PREWARM_KAFKA_BOOTSTRAP_FILE="$dir/bootstrap" "PREWARM_POSTGRES_URL=$(url "$cschema")" \
      PREWARM_ADMIN_PORT=$port PREWARM_ADMIN_HOST=127.0.0.1 PREWARM_LOG_LEVEL=${BENCH_LOG_LEVEL:-warning} \
      "$INGEST" >"$dir/ingest-cluster.log" 2>&1 &
    ingest_pid=$!
    $BENCH wait-processed --port "$port" --count "$M" --pid "$ingest_pid" >/dev/null \
      || { tail -20 "$dir/ingest-cluster.log" >&2; echo "bench: entry-ingest on the cluster died" >&2; exit 1; }
    t1=$(now)
    kill -TERM "$ingest_pid"; wait "$ingest_pid" || true; ingest_pid=
    cluster_s=$(secs "$t0" "$t1")
    cluster_settled
    psql "$PGURL" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $cschema CASCADE"
  }
  : >"$dir/rounds"
  for round in $(seq "$ROUNDS"); do
    # A dev broker of its own, so store.entry.v1 holds exactly this workload and the
    # group starts empty.
    rm -f "$dir/bootstrap"
    "$PREWARMCTL" dev-broker --brokers 3 --bootstrap-file "$dir/bootstrap" --control-file "$dir/control" \
      >"$dir/broker.log" 2>&1 </dev/null &
    broker=$!
    for _ in $(seq 300); do [ -s "$dir/bootstrap" ] && break; sleep 0.1; done
    echo "bench: round $round: producing $M events over 12 partitions and writing the stock tools' input ..."
    PREWARM_KAFKA_BOOTSTRAP_FILE=$dir/bootstrap $BENCH ingest-events --count "$M" --target store.entry.v1 \
      --files "$dir" >/dev/null
    schema=bench_ingest_${run}_$round; stock=bench_stock_${run}_$round
    psql "$PGURL" -qc "CREATE SCHEMA $schema; CREATE SCHEMA $stock"
    PREWARM_POSTGRES_URL=$(url "$schema") "$PREWARMCTL" migrate >/dev/null 2>&1
    PREWARM_POSTGRES_URL=$(url "$stock") "$PREWARMCTL" migrate >/dev/null 2>&1
    psql "$PGURL" -qc "INSERT INTO $schema.stores (store_id, name, category_id, zone_id)
      SELECT s, 'store ' || s, s % 40, s % 25 FROM generate_series(1, 2000) s"
    "${redis[@]}" -n 1 flushdb >/dev/null; "${redis[@]}" -n 2 flushdb >/dev/null
    cluster_s=0
    if [ -n "$CLUSTER_NODES" ] && [ $((round % 2)) = 0 ]; then
      ingest_on_cluster
      PREWARM_KAFKA_BOOTSTRAP_FILE=$dir/bootstrap "$PREWARMCTL" offsets reset --group entry-ingest \
        --topic store.entry.v1 --to earliest >/dev/null
    fi
    port=$((18000 + RANDOM % 2000))
    pg0=$(cpu "$postmaster"); redis0=$(cpu "$redis_server"); broker0=$(cpu "$broker"); idle0=$(awk '/^cpu / { print $5 + $6 }' /proc/stat)
    t0=$(now)
    PREWARM_KAFKA_BOOTSTRAP_FILE=$dir/bootstrap PREWARM_POSTGRES_URL=$(url "$schema") PREWARM_REDIS_DB=1 \
      PREWARM_ADMIN_PORT=$port PREWARM_ADMIN_HOST=127.0.0.1 PREWARM_LOG_LEVEL=${BENCH_LOG_LEVEL:-warning} \
      "$INGEST" >"${BENCH_INGEST_LOG:-$dir/ingest.log}" 2>&1 &
    ingest_pid=$!
    # One poller process (every 50 ms) rather than a curl per poll, which cost the worker CPU.
    $BENCH wait-processed --port "$port" --count "$M" --pid "$ingest_pid" >"$dir/waited" \
      || { tail -20 "${BENCH_INGEST_LOG:-$dir/ingest.log}" >&2; echo "bench: entry-ingest died" >&2; exit 1; }
    t1=$(now)
    [ -z "${BENCH_INGEST_LOG:-}" ] || curl -sf "http://127.0.0.1:$port/metrics" >"$BENCH_INGEST_LOG.metrics" || true
    # The handlers' time is the batches' duration (a histogram's sum); the rest are waits.
    loop_waits="handle $(curl -sf "http://127.0.0.1:$port/metrics" \
      | awk '/^prewarm_batch_duration_seconds_sum\{/ { s += $NF } END { printf "%.2f", s }') s, $(stage_delta "" \
      "$(stage_waits "$port" prewarm_consume_stage_wait_seconds_total)")"
    store_times=$(stage_delta "" "$(stage_waits "$port" prewarm_ingest_stage_seconds_total)")
    idle1=$(awk '/^cpu / { print $5 + $6 }' /proc/stat)
    rss=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$ingest_pid/status")
    ingest_cpu=$(cpu "$ingest_pid"); redis1=$(cpu "$redis_server"); broker1=$(cpu "$broker")
    kill -TERM "$ingest_pid"; wait "$ingest_pid" || true; ingest_pid=
    sleep 0.5  # its backends exit and are reaped into the postmaster's children's time
    pg1=$(cpu "$postmaster")
    union=$(for s in $(seq -f %02g 0 15); do printf 'SELECT count(*) n FROM %s.store_entry_log_%s UNION ALL ' "$schema" "$s"; done)
    rows=$(psql "$PGURL" -qAtc "SELECT sum(n) FROM (${union% UNION ALL }) t")
    [ "$rows" = "$M" ] || { echo "bench: entry-ingest stored $rows rows, expected $M" >&2; exit 1; }
    wrapper=$(secs "$t0" "$t1")
    first=$(sed -n 's/first=//p' "$dir/waited")
    [ -z "$CLUSTER_NODES" ] || [ $((round % 2)) = 0 ] || ingest_on_cluster

    # kcat in a consumer group, as entry-ingest reads (both pay the broker's initial rebalance
    # delay), and, for the record, assigned the partitions (no group, no join).
    t0=$(now); kcat -C -b "$(cat "$dir/bootstrap")" -G "bench-stock-$run-$round" -X auto.offset.reset=earliest \
      -e -q store.entry.v1 >/dev/null; t1=$(now)
    kcat_s=$(secs "$t0" "$t1")
    t0=$(now); kcat -C -b "$(cat "$dir/bootstrap")" -t store.entry.v1 -o beginning -e -q >/dev/null; t1=$(now)
    kcat_assign_s=$(secs "$t0" "$t1")
    copies=$(for s in $(seq -f %02g 0 15); do
      printf '\\copy %s.store_entry_log_%s (event_id, user_id, store_id, category_id, zone_id, entered_at) FROM %s\n' \
        "$stock" "$s" "'$dir/rows-$s.tsv'"; done)
    t0=$(now); psql "$PGURL" -q -v ON_ERROR_STOP=1 <<<"$copies"; t1=$(now)
    psql_s=$(secs "$t0" "$t1")
    t0=$(now); "${redis[@]}" -n 2 --pipe <"$dir/redis.txt" >/dev/null; t1=$(now)
    redis_s=$(secs "$t0" "$t1")
    stock_s=$(echo "$kcat_s + $psql_s + $redis_s" | bc -l)
    ratio=$(echo "$wrapper / $stock_s" | bc -l)
    echo "$wrapper $stock_s $ratio $rss $cluster_s" >>"$dir/rounds"
    drop_schemas; kill "$broker"; wait "$broker" 2>/dev/null || true; broker=
    printf 'ingest round %d of %d: %d events, 12 partitions   entry-ingest %8.3f s  (%.0f events/s, peak RSS %d MB)\n' \
      "$round" "$ROUNDS" "$M" "$wrapper" "$(echo "$M / $wrapper" | bc -l)" "$rss"
    printf '  of which start-up and group join     %.3f s (to the first batch processed), then %.0f events/s\n' \
      "$first" "$(echo "$M / ($wrapper - $first)" | bc -l)"
    printf '  CPU seconds during the run           entry-ingest %.1f, PostgreSQL %.1f, Redis %.1f, dev broker %.1f, idle %.1f (of %.1f)\n' \
      "$(echo "$ingest_cpu / $hz" | bc -l)" "$(echo "($pg1 - $pg0) / $hz" | bc -l)" "$(echo "($redis1 - $redis0) / $hz" | bc -l)" \
      "$(echo "($broker1 - $broker0) / $hz" | bc -l)" "$(echo "($idle1 - $idle0) / $hz" | bc -l)" "$(echo "$wrapper * $(nproc)" | bc -l)"
    printf '  the consume loop waited on           %s\n' "$loop_waits"
    printf '  the batches'"'"' own stages              %s (PostgreSQL and Redis side by side)\n' "$store_times"
    printf '  stock tools one after another        kcat -C -G %.3f s + psql \\copy %.3f s + redis-cli --pipe %.3f s = %.3f s (kcat without a group: %.3f s)\n' \
      "$kcat_s" "$psql_s" "$redis_s" "$stock_s" "$kcat_assign_s"
    printf '  ratio entry-ingest / stock tools     %.2f\n' "$ratio"
    [ -z "$CLUSTER_NODES" ] || printf '  on the 3-primary Redis Cluster       entry-ingest %8.3f s: %.2fx the single node\n' \
      "$cluster_s" "$(echo "$cluster_s / $wrapper" | bc -l)"
  done
  printf 'ingest: median of %d rounds            entry-ingest %.3f s (%.0f events/s), stock tools %.3f s, peak RSS at most %d MB\n' \
    "$ROUNDS" "$(cut -d' ' -f1 "$dir/rounds" | median)" "$(echo "$M / $(cut -d' ' -f1 "$dir/rounds" | median)" | bc -l)" \
    "$(cut -d' ' -f2 "$dir/rounds" | median)" "$(cut -d' ' -f4 "$dir/rounds" | sort -n | tail -1)"
  printf '  ratio entry-ingest / stock tools     median %.2f, rounds %s  (goal: at most 1.00, peak RSS under 200 MB)\n' \
    "$(cut -d' ' -f3 "$dir/rounds" | median)" "$(cut -d' ' -f3 "$dir/rounds" | xargs printf '%.2f ' | sed 's/ $//')"
  if [ -n "$CLUSTER_NODES" ]; then
    printf '  Redis Cluster / single node          median %.2f, rounds %s  (goal: at most 1.30)\n' \
      "$(awk '{ print $5 / $1 }' "$dir/rounds" | median)" "$(awk '{ printf "%.2f ", $5 / $1 }' "$dir/rounds" | sed 's/ $//')"
  fi
fi

# Shared by the worker scenarios below.
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# The machine's CPU time so far, in ticks: busy, idle and stolen (by the hypervisor from a
# shared host); machine_share prints how a stretch between two of these was spent.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6, $9 }' /proc/stat; }
machine_share() { # ticks-before ticks-after
  echo "$1 $2" | awk '{ b = $4 - $1; i = $5 - $2; s = $6 - $3; t = b + i + s; if (t == 0) t = 1
    printf "the machine was busy %.0f %%, idle %.0f %%, stolen by its host %.0f %%", 100 * b / t, 100 * i / t, 100 * s / t }'
}
wait_ready() { # port pid name
  for _ in $(seq 600); do
    kill -0 "$2" 2>/dev/null || { echo "bench: $3 died" >&2; return 1; }
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "bench: $3 not ready in 60 s" >&2; return 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_url() { echo "$PREWARM_POSTGRES_URL options='-c search_path=$1'"; }

if has scoring; then
  # 100,000 active users (BENCH_SCORING_USERS) and 10,000,000 entries (BENCH_SCORING_ROWS) over
  # the last 30 days, 2,000 stores; one run of the nightly scoring, timed from the trigger to
  # its last list written, with one and then two store-scorer processes, beside one
  # PostgreSQL GROUP BY (user_id, store_id) over the same rows: the least any scorer must do.
  USERS=${BENCH_SCORING_USERS:-100000}; ROWS=${BENCH_SCORING_ROWS:-10000000}
  SCORER=${STORE_SCORER:-.build/release/store-scorer}
  run=$(date +%s%N); sschema=bench_scoring_$run; pids=()
  trap 'kill ${pids[*]:-} 2>/dev/null || true; psql "$PGURL" -qc "DROP SCHEMA IF EXISTS $sschema CASCADE" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  psql "$PGURL" -qc "CREATE SCHEMA $sschema"
  PREWARM_POSTGRES_URL=$(pg_url "$sschema") "$PREWARMCTL" migrate >/dev/null 2>&1
  psql "$PGURL" -qc "INSERT INTO $sschema.stores (store_id, name, category_id, zone_id)
    SELECT s, 'canteen stall ' || s, s % 40, s % 25 FROM generate_series(1, 2000) s"
  redis-cli -h 127.0.0.1 -p "$PREWARM_REDIS_PORT" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning -n 3 flushdb >/dev/null
  echo "bench: scoring: writing $ROWS entries of $USERS users and their day sets ..."
  PREWARM_POSTGRES_URL=$(pg_url "$sschema") PREWARM_REDIS_DB=3 $BENCH scoring-data --count "$USERS" --rows "$ROWS" >/dev/null
  union=$(for s in $(seq -f %02g 0 15); do printf 'SELECT user_id, store_id FROM %s.store_entry_log_%s WHERE entered_at >= now() - interval %s UNION ALL ' "$sschema" "$s" "'30 days'"; done)
  t0=$(now); psql "$PGURL" -qAtc "SELECT count(*) FROM (SELECT user_id, store_id, count(*) FROM (${union% UNION ALL }) e GROUP BY 1, 2) g" >/dev/null; t1=$(now)
  query_s=$(secs "$t0" "$t1")
  # The period of the latest 02:00 fire: a pod starting on an empty Redis catches it up
  # (once) by itself; the bench lets that run finish, then times a forced run of the same
  # period alone (two runs at once would share the machine and halve the figures).
  period=$(TZ=${PREWARM_TIMEZONE:-Asia/Shanghai} date -d '-2 hours' +%Y%m%d)
  for pods in ${BENCH_SCORING_PODS:-1 2}; do
    ports=(); pids=()
    for i in $(seq "$pods"); do
      port=$(free_port); ports+=("$port")
      PREWARM_POSTGRES_URL=$(pg_url "$sschema") PREWARM_REDIS_DB=3 PREWARM_ADMIN_PORT=$port \
        PREWARM_ADMIN_HOST=127.0.0.1 PREWARM_ADMIN_TOKEN=bench PREWARM_LOG_LEVEL=${BENCH_LOG_LEVEL:-warning} \
        "$SCORER" >"$tmp/scorer-$pods-$i.log" 2>&1 &
      pids+=($!)
    done
    for i in $(seq 0 $((pods - 1))); do wait_ready "${ports[$i]}" "${pids[$i]}" store-scorer; done
    if [ "$pods" = 1 ]; then
      caught=$(PREWARM_REDIS_DB=3 $BENCH wait-run --job store-score --period "$period" --attempt 1 | head -1)
      [ -n "${BENCH_VERBOSE:-}" ] && echo "bench: the catch-up run at start-up: $caught" >&2
    fi
    t0=$(now)
    answer=$(curl -sf -X POST -H 'Authorization: Bearer bench' "http://127.0.0.1:${ports[0]}/jobs/store-score/trigger?period=$period&force=true")
    [ -n "${BENCH_VERBOSE:-}" ] && echo "bench: trigger answered $answer" >&2
    attempt=$(echo "$answer" | sed -n 's/.*"attempt":\([0-9]*\).*/\1/p')
    result=$(PREWARM_REDIS_DB=3 $BENCH wait-run --job store-score --period "$period" --attempt "$attempt")
    t1=$(now)
    rss=0; for pid in "${pids[@]}"; do r=$(rss_mb "$pid"); [ "$r" -gt "$rss" ] && rss=$r; done
    kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
    run_s=$(secs "$t0" "$t1")
    printf 'scoring: %d users, %d entries, %d store-scorer process(es)  run %8.3f s (%.0f users/s, peak RSS %d MB; %s)\n' \
      "$USERS" "$ROWS" "$pods" "$run_s" "$(echo "$USERS / $run_s" | bc -l)" "$rss" "$(echo "$result" | head -1)"
    printf '  one GROUP BY (user_id, store_id)    %8.3f s    ratio run / query %.2f  (goal: at most 1.50, RSS under 200 MB)\n' \
      "$query_s" "$(echo "$run_s / $query_s" | bc -l)"
  done
fi

if has api; then
  # wrk, 64 connections, 20 s (BENCH_API_SECONDS): the personal path over 100,000 users, the
  # default path and the random path, beside the same server answering a constant body of
  # the personal answer's size: the HTTP limit of this machine for that server.
  USERS=${BENCH_API_USERS:-100000}; SECONDS_=${BENCH_API_SECONDS:-20}
  API=${RECOMMEND_API:-.build/release/recommend-api}
  run=$(date +%s%N); aschema=bench_api_$run; api_pid=
  trap 'kill $api_pid ${proxy_pid:-} 2>/dev/null || true; psql "$PGURL" -qc "DROP SCHEMA IF EXISTS $aschema CASCADE" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  psql "$PGURL" -qc "CREATE SCHEMA $aschema"
  PREWARM_POSTGRES_URL=$(pg_url "$aschema") "$PREWARMCTL" migrate >/dev/null 2>&1
  redis() { redis-cli -h 127.0.0.1 -p "$PREWARM_REDIS_PORT" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning -n 4 "$@"; }
  redis flushdb >/dev/null
  PREWARM_POSTGRES_URL=$(pg_url "$aschema") PREWARM_REDIS_DB=4 $BENCH api-data --count "$USERS" >/dev/null
  start_api() { # log name[, VARIABLE=value...: they win over these]; sets api_pid and http
    admin=$(free_port); http=$(free_port)
    env PREWARM_POSTGRES_URL="$(pg_url "$aschema")" PREWARM_REDIS_DB=4 PREWARM_ADMIN_PORT=$admin \
      PREWARM_ADMIN_HOST=127.0.0.1 PREWARM_HTTP_PORT=$http PREWARM_HTTP_HOST=127.0.0.1 \
      PREWARM_RECOMMEND_BENCH_CONSTANT=true PREWARM_LOG_LEVEL=${BENCH_LOG_LEVEL:-warning} "${@:2}" \
      "$API" >"$tmp/$1.log" 2>&1 &
    api_pid=$!
    wait_ready "$admin" "$api_pid" recommend-api
  }
  start_api api
  size=$(curl -sf "http://127.0.0.1:$http/v1/users/42/store-recommendations" | wc -c)
  # Every run draws a random number per request in the same Lua generator, so wrk costs the
  # same per request in each (it shares the two cores): only the server's work differs.
  generator() { # the path before the number, the path after it
    cat <<LUA
math.randomseed(os.time())
request = function() return wrk.format("GET", "$1" .. math.random(1, $USERS) .. "$2") end
LUA
  }
  generator "/v1/bench/constant?bytes=$size&u=" "" >"$tmp/constant.lua"
  generator "/v1/users/" "/store-recommendations" >"$tmp/personal.lua"
  generator "/v1/store-recommendations?u=" "" >"$tmp/anonymous.lua"
  redis_pid=$(redis info server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')
  bench_wrk() { # wrk's arguments; prints requests/s, p50 and p99 in ms, then the CPU seconds
    # recommend-api and Redis used (wrk has the rest of the two cores)
    local out rps p50 p99 a0 r0
    a0=$(cpu_s "$api_pid"); r0=$(cpu_s "$redis_pid")
    out=$(wrk -t2 -c64 -d"${SECONDS_}s" --latency "$@")
    cpu="api $(echo "$(cpu_s "$api_pid") - $a0" | bc) s, redis $(echo "$(cpu_s "$redis_pid") - $r0" | bc) s"
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p50=$(echo "$out" | awk '$1 == "50%" { print $2 }'); p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    to_ms() { case $1 in *us) echo "${1%us} / 1000" | bc -l;; *ms) echo "${1%ms}";; *s) echo "${1%s} * 1000" | bc -l;; *) echo 0;; esac; }
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu"
  }
  read -r c_rps c_p50 c_p99 c_cpu <<<"$(bench_wrk -s "$tmp/constant.lua" "http://127.0.0.1:$http")"
  read -r p_rps p_p50 p_p99 p_cpu <<<"$(bench_wrk -s "$tmp/personal.lua" "http://127.0.0.1:$http")"
  read -r d_rps d_p50 d_p99 d_cpu <<<"$(bench_wrk -s "$tmp/anonymous.lua" "http://127.0.0.1:$http")"
  redis del STORE_RECOMMEND_DEFAULT >/dev/null
  read -r r_rps r_p50 r_p99 r_cpu <<<"$(bench_wrk -s "$tmp/anonymous.lua" "http://127.0.0.1:$http")"
  random_source=$(curl -sfi "http://127.0.0.1:$http/v1/store-recommendations" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-prewarm-source" { print $2 }')
  rss=$(rss_mb "$api_pid")
  kill -TERM "$api_pid"; wait "$api_pid" 2>/dev/null || true; api_pid=
  line() { printf 'api: %-40s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  ratio to constant %.2f  (CPU: %s)\n' "$1" "$2" "$3" "$4" "$(echo "$2 / $c_rps" | bc -l)" "$5"; }
  printf 'api: constant body of %d bytes (the limit)           %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  (CPU: %s)\n' "$size" "$c_rps" "$c_p50" "$c_p99" "$c_cpu"
  line "personal lists, $USERS users" "$p_rps" "$p_p50" "$p_p99" "$p_cpu"
  line "default list (anonymous)" "$d_rps" "$d_p50" "$d_p99" "$d_cpu"
  line "random fill (default deleted; then $random_source)" "$r_rps" "$r_p50" "$r_p99" "$r_cpu"
  printf 'api: goal: personal at least 0.85 of the constant (closed loop; wrk'"'"'s p99 is its own queue); peak RSS %d MB\n' "$rss"
  # Latency at a steady offered load: prewarm-load (C, epoll, one thread) sends on a fixed
  # schedule, at 50 % and 80 % of the constant endpoint's closed-loop maximum above, and times
  # each answer from its request's intended send time (a stall shows as the queue it made).
  # Each path in turn, BENCH_OPEN_ROUNDS rounds (3) of BENCH_OPEN_SECONDS (10) after 2 s of
  # warm-up, users drawn over all of them; the medians of the rounds are the result. Then the
  # same at 50 % with Redis behind a proxy that delays each way by 500 us (a remote Redis:
  # 1 ms more per round trip: the personal path pays it once, its list's GET, while its
  # stores' details come from the process's near cache, PREWARM_RECOMMEND_NEAR_CACHE_MS).
  OPEN_ROUNDS=${BENCH_OPEN_ROUNDS:-3}; OPEN_SECONDS=${BENCH_OPEN_SECONDS:-10}
  declare -A open_p50 open_p99 open_cpu
  open_run() { # label path rate: runs the rounds, keeps the medians under open_*[label@rate]
    local round out p50s="" p99s="" cpus=""
    for round in $(seq "$OPEN_ROUNDS"); do
      out=$(.build/release/prewarm-load http --port "$http" --path "$2" --users "$USERS" --rate "$3" \
        --seconds "$OPEN_SECONDS" --warmup 2 --connections 64 --seed "$((RANDOM + 1))") \
        || { echo "bench: api open loop: $1 at $3 req/s: $out" >&2; exit 1; }
      p50s="$p50s $(echo "$out" | tr ' ' '\n' | sed -n 's/^p50_ms=//p')"
      p99s="$p99s $(echo "$out" | tr ' ' '\n' | sed -n 's/^p99_ms=//p')"
      cpus="$cpus $(echo "$out" | tr ' ' '\n' | sed -n 's/^cpu_us_per_request=//p')"
    done
    open_p50[$1@$3]=$(echo "$p50s" | xargs -n1 | median)
    open_p99[$1@$3]=$(echo "$p99s" | xargs -n1 | median)
    open_cpu[$1@$3]=$(echo "$cpus" | xargs -n1 | median)
    printf '  %-9s p50 %6.2f ms  p99 %6.2f ms   rounds' "$1" "${open_p50[$1@$3]}" "${open_p99[$1@$3]}"
    for round in $p99s; do printf ' %.2f' "$round"; done
    printf ' (p99)   generator %.1f us of CPU a request\n' "${open_cpu[$1@$3]}"
  }
  open_paths() { # rate; the four paths, the default deleted before the random one
    open_run constant "/v1/bench/constant?bytes=$size&u={u}" "$1"
    open_run personal "/v1/users/{u}/store-recommendations" "$1"
    open_run default "/v1/store-recommendations?u={u}" "$1"
    redis del STORE_RECOMMEND_DEFAULT >/dev/null
    open_run random "/v1/store-recommendations?u={u}" "$1"
    printf '  personal p99 / constant p99 at the same rate: %.2f' \
      "$(echo "${open_p99[personal@$1]} / ${open_p99[constant@$1]}" | bc -l)"
  }
  redis del STORE_RECOMMEND_DEFAULT >/dev/null
  PREWARM_POSTGRES_URL=$(pg_url "$aschema") PREWARM_REDIS_DB=4 $BENCH api-data --count "$USERS" >/dev/null
  start_api api-open
  half=$(printf '%.0f' "$(echo "$c_rps * 0.5" | bc -l)"); most=$(printf '%.0f' "$(echo "$c_rps * 0.8" | bc -l)")
  printf 'api open loop: %d rounds of %d s each, medians; offered 50 %% of the constant'"'"'s closed-loop %.0f req/s = %d req/s:\n' \
    "$OPEN_ROUNDS" "$OPEN_SECONDS" "$c_rps" "$half"
  open_paths "$half"; printf '  (goal: at most 1.30)\n'
  PREWARM_POSTGRES_URL=$(pg_url "$aschema") PREWARM_REDIS_DB=4 $BENCH api-data --count "$USERS" >/dev/null
  printf 'api open loop: offered 80 %% = %d req/s:\n' "$most"
  open_paths "$most"; printf '\n'
  kill -TERM "$api_pid"; wait "$api_pid" 2>/dev/null || true; api_pid=
  PREWARM_POSTGRES_URL=$(pg_url "$aschema") PREWARM_REDIS_DB=4 $BENCH api-data --count "$USERS" >/dev/null
  proxy_port=$(free_port)
  .build/release/prewarm-load delay-proxy --listen "$proxy_port" --target-port "$PREWARM_REDIS_PORT" --delay-us 500 \
    2>"$tmp/proxy.log" &
  proxy_pid=$!
  start_api api-remote PREWARM_REDIS_PORT="$proxy_port"
  printf 'api open loop, Redis 1 ms further a round trip (delay-proxy), offered %d req/s:\n' "$half"
  open_run constant "/v1/bench/constant?bytes=$size&u={u}" "$half"
  open_run personal "/v1/users/{u}/store-recommendations" "$half"
  open_run default "/v1/store-recommendations?u={u}" "$half"
  printf '  personal p99 / constant p99: %.2f (its round trip to Redis: 1 ms more at the least)\n' \
    "$(echo "${open_p99[personal@$half]} / ${open_p99[constant@$half]}" | bc -l)"
  kill -TERM "$api_pid" "$proxy_pid"; wait "$api_pid" "$proxy_pid" 2>/dev/null || true; api_pid=; proxy_pid=
  # The personal path without the near cache of store details (two round trips a request),
  # closed loop as above: what the near cache is worth.
  start_api api-no-near PREWARM_RECOMMEND_NEAR_CACHE_MS=0
  read -r n_rps n_p50 n_p99 n_cpu <<<"$(bench_wrk -s "$tmp/personal.lua" "http://127.0.0.1:$http")"
  kill -TERM "$api_pid"; wait "$api_pid" 2>/dev/null || true; api_pid=
  line "personal lists without the near cache" "$n_rps" "$n_p50" "$n_p99" "$n_cpu"
  if [ -n "$CLUSTER_NODES" ]; then
    # The same data and paths on the 3-primary Redis Cluster (its three primaries share the
    # two cores with wrk and the API).
    cluster_flush
    env "${cluster_env[@]}" "PREWARM_POSTGRES_URL=$(pg_url "$aschema")" $BENCH api-data --count "$USERS" >/dev/null
    start_api api-cluster "${cluster_env[@]}"
    redis_pid=0
    read -r cp_rps cp_p50 cp_p99 _ <<<"$(bench_wrk -s "$tmp/personal.lua" "http://127.0.0.1:$http")"
    read -r cd_rps cd_p50 cd_p99 _ <<<"$(bench_wrk -s "$tmp/anonymous.lua" "http://127.0.0.1:$http")"
    for node in $(cluster_primaries); do cluster_cli "$node" del STORE_RECOMMEND_DEFAULT >/dev/null; done
    read -r cr_rps cr_p50 cr_p99 _ <<<"$(bench_wrk -s "$tmp/anonymous.lua" "http://127.0.0.1:$http")"
    kill -TERM "$api_pid"; wait "$api_pid" 2>/dev/null || true; api_pid=
    cline() { printf 'api on the Redis Cluster: %-24s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  %.2fx the single node\n' "$1" "$2" "$3" "$4" "$(echo "$2 / $5" | bc -l)"; }
    cline "personal lists" "$cp_rps" "$cp_p50" "$cp_p99" "$p_rps"
    cline "default list" "$cd_rps" "$cd_p50" "$cd_p99" "$d_rps"
    cline "random fill" "$cr_rps" "$cr_p50" "$cr_p99" "$r_rps"
    printf 'api: goal on the cluster: at least 0.80x the single node\n'
  fi
fi

if has ka; then
  # One key-account shop of 1,000,000 users (BENCH_KA_USERS; values about 200 bytes), 200
  # staff and 5,000 products: wall time from the trigger to a complete, verified pre-warm
  # (success flag set) with one ka-prewarmer, beside the stock tools doing the same I/O one
  # after another: psql \copy of the same rows (the same JSON, built by PostgreSQL) and
  # redis-cli --pipe of the same SETs with their expiries. Then 20 shops of 50,000 users
  # (BENCH_KA_SHOP_USERS) with two ka-prewarmer processes.
  USERS=${BENCH_KA_USERS:-1000000}; SHOP_USERS=${BENCH_KA_SHOP_USERS:-50000}
  KA=${KA_PREWARMER:-.build/release/ka-prewarmer}
  run=$(date +%s%N); kschema=bench_ka_$run; pids=()
  trap 'kill ${pids[*]:-} 2>/dev/null || true; psql "$PGURL" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $kschema CASCADE; DROP SCHEMA IF EXISTS ${kschema}_cluster CASCADE" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  psql "$PGURL" -qc "CREATE SCHEMA $kschema"
  PREWARM_POSTGRES_URL=$(pg_url "$kschema") "$PREWARMCTL" migrate >/dev/null 2>&1
  kredis() { redis-cli -h 127.0.0.1 -p "$PREWARM_REDIS_PORT" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning -n 5 "$@"; }
  kredis flushdb >/dev/null
  ka_shop() { # shop id, users
    psql "$PGURL" -q <<SQL
SET search_path = $kschema;
INSERT INTO ka_shops (shop_id, name, info) VALUES ($1, 'bench shop $1', '{"city": "Hangzhou"}');
INSERT INTO ka_staff SELECT $1::bigint * 1000 + s, $1, 'host ' || s, 'assistant' FROM generate_series(1, 200) s;
INSERT INTO ka_products SELECT $1::bigint * 100000 + p, $1, 'item ' || p, 100 * p, 10 FROM generate_series(1, 5000) p;
INSERT INTO ka_shop_users SELECT $1, u, 'viewer-' || u, u % 9, u * 7 % 100000,
  'live-viewer,coupon-user,early-bird,returning,region-east,night-owl,weekend-shopper,app,' || (u % 97)
  FROM generate_series(1, $2) u;
SQL
  }
  echo "bench: ka: writing a shop of $USERS users ..."
  ka_shop 1 "$USERS"
  psql "$PGURL" -qc "VACUUM ANALYZE $kschema.ka_shop_users"
  # The pods' cache guard (PREWARM_KA_CACHE_CHECK_S) is put off: the bench empties Redis
  # between rounds for the stock tools, which the guard would take for a lost cache and warm
  # the earlier rounds' lives again beside the timed one (it did: rounds of twice the work).
  start_ka() { # index; prints nothing, sets ports[index] and pids
    local port; port=$(free_port); ports+=("$port")
    PREWARM_POSTGRES_URL=$(pg_url "$kschema") PREWARM_REDIS_DB=5 PREWARM_ADMIN_PORT=$port \
      PREWARM_ADMIN_HOST=127.0.0.1 PREWARM_ADMIN_TOKEN=bench PREWARM_LOG_LEVEL=${BENCH_LOG_LEVEL:-warning} \
      PREWARM_KA_MIN_WRITERS=${BENCH_KA_WRITERS:-4} PREWARM_KA_MAX_WRITERS=${BENCH_KA_WRITERS:-4} \
      PREWARM_KA_CACHE_CHECK_S=86400 "$KA" >"$tmp/ka-$1.log" 2>&1 &
    pids+=($!)
  }
  trigger_ka() { # port shop live
    local starts ends answer
    starts=$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ); ends=$(date -u -d '+4 hours' +%Y-%m-%dT%H:%M:%SZ)
    answer=$(curl -sf -X POST -H 'Authorization: Bearer bench' -H 'Content-Type: application/json' \
      -d "{\"shop_id\": $2, \"live_id\": $3, \"starts_at\": \"$starts\", \"ends_at\": \"$ends\"}" \
      "http://127.0.0.1:$1/v1/ka/prewarm")
    # A skipped reservation (e.g. a shop under PREWARM_KA_MIN_USERS) would be waited for forever.
    [[ $answer != *'"outcome":"skipped"'* ]] || { echo "bench: ka: live $3 not queued: $answer" >&2; exit 1; }
  }
  wait_ka() { # port live...; until every live's task has succeeded (one request per 20 ms)
    local live state
    for live in "${@:2}"; do
      while true; do
        state=$(curl -sf "http://127.0.0.1:$1/v1/ka/tasks/$live" || true)
        [[ $state == *'"state":"succeeded"'* ]] && break
        [[ $state == *'"state":"failed"'* ]] && { echo "bench: ka: live $live failed" >&2; return 1; }
        sleep 0.02
      done
    done
  }
  # Rounds alternate the two (BENCH_KA_ROUNDS, 3), each from an empty Redis database: the
  # machine is noisy, so the median ratio is the result. The rows and the RESP file of the
  # stock tools are the same in every round.
  columns="user_id, json_build_object('user_id', user_id, 'shop_id', shop_id, 'nickname', nickname, 'level', level, 'points', points, 'tags', tags)::text"
  ports=(); start_ka 0; wait_ready "${ports[0]}" "${pids[0]}" ka-prewarmer
  ratios=(); rss=0; cratios=(); cpu_ratios=(); shares=(); cport=
  redis_pid=$(cat "${PREWARM_DEV_RUN_DIR:-.run}/redis/redis.pid" 2>/dev/null || echo 0)
  for round in $(seq 1 "${BENCH_KA_ROUNDS:-3}"); do
    kredis flushdb >/dev/null
    [ -z "$CLUSTER_NODES" ] || cluster_settled
    client0=$(cpu_s "${pids[0]}"); server0=$(cpu_s "$redis_pid"); waits0=$(stage_waits "${ports[0]}" prewarm_ka_stage_wait_seconds_total)
    t0=$(now); trigger_ka "${ports[0]}" 1 $((1000 + round)); wait_ka "${ports[0]}" $((1000 + round)); t1=$(now)
    waits=$(stage_delta "$waits0" "$(stage_waits "${ports[0]}" prewarm_ka_stage_wait_seconds_total)")
    client_s=$(echo "$(cpu_s "${pids[0]}") - $client0" | bc -l); server_s=$(echo "$(cpu_s "$redis_pid") - $server0" | bc -l)
    ka_s=$(secs "$t0" "$t1"); r=$(rss_mb "${pids[0]}"); [ "$r" -gt "$rss" ] && rss=$r
    keys=$(kredis dbsize)
    cpu=$(ps -o times= -p "${pids[0]}" | tr -d ' ')

    # The stock tools: the same rows out of PostgreSQL, then the same SETs into Redis.
    kredis flushdb >/dev/null
    t0=$(now); psql "$PGURL" -qc "\\copy (SELECT $columns FROM $kschema.ka_shop_users WHERE shop_id = 1 ORDER BY user_id) TO '$tmp/users.tsv'"; t1=$(now)
    copy_s=$(secs "$t0" "$t1")
    if [ "$round" = 1 ]; then
      bytes=$(awk -F'\t' '{ n += length($2) } END { printf "%.0f", n / NR }' "$tmp/users.tsv")
      python3 - "$tmp/users.tsv" "$tmp/users.resp" <<'PY'
import random, sys, time
end = int((time.time() + 4 * 3600) * 1000)
with open(sys.argv[1], 'rb') as rows, open(sys.argv[2], 'wb') as out:
    for line in rows:
        user, value = line.rstrip(b'\n').split(b'\t', 1)
        key = b'ka:user:{1:%d}:%s' % (int(user) % 1021, user)  # KACache.userKey
        expiry = str(end + 1_800_000 + random.randint(0, 600_000)).encode()
        out.write(b'*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$4\r\nPXAT\r\n$%d\r\n%s\r\n'
                  % (len(key), key, len(value), value, len(expiry), expiry))
PY
    fi
    t0=$(now); kredis --pipe <"$tmp/users.resp" >/dev/null; t1=$(now)
    pipe_s=$(secs "$t0" "$t1")
    tools_s=$(echo "$copy_s + $pipe_s" | bc -l)
    ratio=$(echo "$ka_s / $tools_s" | bc -l | xargs printf '%.2f'); ratios+=("$ratio")
    printf 'ka round %d: one shop, %d users (%d-byte values), 200 staff, 5,000 products: pre-warmed and verified in %7.3f s (%.0f users/s, %s keys; ka-prewarmer CPU so far %s)\n' \
      "$round" "$USERS" "$bytes" "$ka_s" "$(echo "$USERS / $ka_s" | bc -l)" "$keys" "$cpu"
    printf '  psql \\copy of the rows %.3f s + redis-cli --pipe of the SETs %.3f s = %7.3f s    ratio %s\n' \
      "$copy_s" "$pipe_s" "$tools_s" "$ratio"
    printf '  ka-prewarmer CPU %.1f s, Redis %.1f s; its batch loop waited on: %s\n' "$client_s" "$server_s" "$waits"
    if [ -n "$CLUSTER_NODES" ]; then
      # The same shop on the 3-primary cluster, by a ka-prewarmer pointed at it.
      cluster_flush
      [ -n "${cport:-}" ] || {
        # A schema of its own with the same shop: pods of one schema share its task queue,
        # and the single node's pod would take the cluster's tasks.
        psql "$PGURL" -qc "CREATE SCHEMA ${kschema}_cluster"
        PREWARM_POSTGRES_URL=$(pg_url "${kschema}_cluster") "$PREWARMCTL" migrate >/dev/null 2>&1
        for table in ka_shops ka_staff ka_products ka_marketing ka_shop_users; do
          psql "$PGURL" -qc "INSERT INTO ${kschema}_cluster.$table SELECT * FROM $kschema.$table"
        done
        psql "$PGURL" -qc "VACUUM ANALYZE ${kschema}_cluster.ka_shop_users"
        cport=$(free_port)
        env "${cluster_env[@]}" "PREWARM_POSTGRES_URL=$(pg_url "${kschema}_cluster")" PREWARM_ADMIN_PORT=$cport \
          PREWARM_ADMIN_HOST=127.0.0.1 PREWARM_ADMIN_TOKEN=bench PREWARM_LOG_LEVEL=${BENCH_LOG_LEVEL:-warning} \
          PREWARM_KA_MIN_WRITERS=${BENCH_KA_WRITERS:-4} PREWARM_KA_MAX_WRITERS=${BENCH_KA_WRITERS:-4} \
          PREWARM_KA_CACHE_CHECK_S=86400 "$KA" >"$tmp/ka-cluster.log" 2>&1 &
        cpid=$!; pids+=("$cpid")
        wait_ready "$cport" "$cpid" "ka-prewarmer on the cluster"
      }
      cluster_settled
      cclient0=$(cpu_s "$cpid"); cserver0=$(cluster_cpu_s)
      t0=$(now); trigger_ka "$cport" 1 $((5000 + round)); wait_ka "$cport" $((5000 + round)); t1=$(now)
      cluster_s=$(secs "$t0" "$t1")
      cclient_s=$(echo "$(cpu_s "$cpid") - $cclient0" | bc -l)
      cluster_settled  # the replicas' catching up is the cluster's cost too
      cserver_s=$(echo "$(cluster_cpu_s) - $cserver0" | bc -l)
      cpu_ratios+=("$(echo "$cclient_s / $client_s" | bc -l | xargs printf '%.2f')")
      sizes=$(cluster_sizes)
      share=$(echo "$sizes" | tr ' ' '\n' | awk '{ s += $1; if ($1 > m) m = $1 } END { printf "%.1f", 100 * m / s }')
      cratios+=("$(echo "$cluster_s / $ka_s" | bc -l | xargs printf '%.2f')"); shares+=("$share")
      printf '  on the 3-primary Redis Cluster: %7.3f s (%.0f users/s), %.2fx the single node; keys per primary %s, the largest %s %%\n' \
        "$cluster_s" "$(echo "$USERS / $cluster_s" | bc -l)" "$(echo "$cluster_s / $ka_s" | bc -l)" "$sizes" "$share"
      printf '  CPU seconds: ka-prewarmer %.1f on the single node, %.1f on the cluster (%.2fx); Redis %.1f, the cluster'"'"'s nodes %.1f\n' \
        "$client_s" "$cclient_s" "$(echo "$cclient_s / $client_s" | bc -l)" "$server_s" "$cserver_s"
    fi
  done
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
  if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS"; cp "$tmp"/ka-*.log "$BENCH_LOGS"/; fi
  median=$(printf '%s\n' "${ratios[@]}" | median)
  printf 'ka: rounds %s: median ratio %s (goal: at most 1.00), peak RSS %d MB (goal: under 200 MB)\n' "${ratios[*]}" "$median" "$rss"
  if [ -n "$CLUSTER_NODES" ]; then
    printf 'ka: Redis Cluster / single node: rounds %s, median %s (goal: at most 1.30); largest primary %s %% of the keys (goal: under 40 %%)\n' \
      "${cratios[*]}" "$(printf '%s\n' "${cratios[@]}" | median)" \
      "$(printf '%s\n' "${shares[@]}" | sort -n | tail -1)"
    printf 'ka: the client'"'"'s own cost, ka-prewarmer CPU on the cluster / on the single node: rounds %s, median %s\n' \
      "${cpu_ratios[*]}" "$(printf '%s\n' "${cpu_ratios[@]}" | median)"
  fi

  # 20 shops of 50,000 users, two processes (BENCH_KA_SHOPS=0 skips it: make bench scale).
fi
if has ka && [ "${BENCH_KA_SHOPS:-20}" != 0 ]; then
  kredis flushdb >/dev/null
  for shop in $(seq 101 120); do ka_shop "$shop" "$SHOP_USERS"; done
  psql "$PGURL" -qc "VACUUM ANALYZE $kschema.ka_shop_users"
  ports=(); start_ka 0; start_ka 1
  wait_ready "${ports[0]}" "${pids[0]}" ka-prewarmer; wait_ready "${ports[1]}" "${pids[1]}" ka-prewarmer
  lives=(); t0=$(now)
  for shop in $(seq 101 120); do trigger_ka "${ports[$((shop % 2))]}" "$shop" "$((shop + 2000))"; lives+=("$((shop + 2000))"); done
  wait_ka "${ports[0]}" "${lives[@]}"; t1=$(now)
  fleet_s=$(secs "$t0" "$t1")
  rss=0; for pid in "${pids[@]}"; do r=$(rss_mb "$pid"); [ "$r" -gt "$rss" ] && rss=$r; done
  shares=$(psql "$PGURL" -qAtc "SELECT string_agg(n || ' tasks on ' || split_part(owner, ':', 2), ', ') FROM (SELECT owner, count(*) n FROM $kschema.prewarm_tasks WHERE state = 'succeeded' AND key::bigint > 2000 GROUP BY owner) o" 2>/dev/null || echo "?")
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
  printf 'ka: 20 shops x %d users, two ka-prewarmer processes: %8.3f s (%.0f users/s, peak RSS %d MB; by pid: %s)\n' \
    "$SHOP_USERS" "$fleet_s" "$(echo "20 * $SHOP_USERS / $fleet_s" | bc -l)" "$rss" "$shares"
fi

if has push; then
  # 100,000 target users (BENCH_PUSH_USERS) of one task at 21:00, every one in the experiment.
  # The pre-warm, timed from the trigger to the run's end, with one and then two
  # push-producer processes against `prewarmctl simulate-downstream` at 10 ms a call, beside
  # the bound that 50 calls in flight per process allow for two sequential calls a user
  # (50 / (2 x 10 ms) = 2,500 users/s a process); then the 21:00 push of the same users with
  # the material service at 5 ms, beside its bound (50 / 5 ms = 10,000 pushes/s).
  USERS=${BENCH_PUSH_USERS:-100000}
  PUSHER=${PUSH_PRODUCER:-.build/release/push-producer}
  run=$(date +%s%N); pschema=bench_push_$run; pids=(); sim_pid=
  trap 'kill ${pids[*]:-} $sim_pid ${hb_pid:-} 2>/dev/null || true; psql "$PGURL" -qc "DROP SCHEMA IF EXISTS $pschema CASCADE" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  psql "$PGURL" -qc "CREATE SCHEMA $pschema"
  PREWARM_POSTGRES_URL=$(pg_url "$pschema") "$PREWARMCTL" migrate >/dev/null 2>&1
  day=$(TZ=${PREWARM_TIMEZONE:-Asia/Shanghai} date +%Y%m%d)
  psql "$PGURL" -qc "INSERT INTO $pschema.task_data (task_id, source_uid, project, push_hour, payload)
    SELECT '04-026-$day-r0gdua', 5000000 + u, 'novel', 21, '{\"series_id\": ' || (u % 500) || '}' FROM generate_series(1, $USERS) u"
  psql "$PGURL" -qc "VACUUM ANALYZE $pschema.task_data"
  predis() { redis-cli -h 127.0.0.1 -p "$PREWARM_REDIS_PORT" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning -n 6 "$@"; }
  predis flushdb >/dev/null
  sport=$(free_port)
  "$PREWARMCTL" simulate-downstream --port "$sport" --latency 10ms --service-latency material=5ms \
    --experiment-share 1 >"$tmp/simulator.log" 2>&1 &
  sim_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$sport/stats" >/dev/null && break; sleep 0.1; done
  sim() { curl -sf "$@"; }
  # Where the bound went. The pods' own view: their budgets' slots taken on average over
  # the run (prewarm_push_calls_in_flight_seconds_total / the run's time). The simulator's:
  # the calls it held on average (their summed time there / the run's time) and a call's
  # mean time there. The ratio to the bound is the product of three shares: the slots the
  # pods kept taken (their own work between calls: below 1 when no call waited for a slot),
  # the share of that time the calls were at the simulator (the rest: in the queues of the
  # cores both sides share), and the set latency over a call's time there.
  explain() { # run-seconds slots-in-all latency-ms
    local taken=0 port value batches pods=""
    for port in "${ports[@]}"; do
      curl -sf "http://127.0.0.1:$port/metrics" >"$tmp/metrics"
      value=$(awk '/^prewarm_push_calls_in_flight_seconds_total/ { s += $2 } END { print s + 0 }' "$tmp/metrics")
      batches=$(awk '/^prewarm_messages_processed_total.*book-rec.batches/ { s += $2 } END { print s + 0 }' "$tmp/metrics")
      taken=$(echo "$taken + $value" | bc -l)
      pods="$pods$(printf ' %d batches, slots kept %.2f;' "$batches" "$(echo "$value / $1 / 50" | bc -l)")"
    done
    [ "${#ports[@]}" -gt 1 ] && echo "  each pod:${pods%;}"
    sim "http://127.0.0.1:$sport/stats" | python3 -c 'import json, sys
t = json.load(sys.stdin)["total"]; run, taken, slots, latency = map(float, sys.argv[1:])
kept = taken / run; held = t["in_flight_seconds"] / run; call = 1000 * t["in_flight_seconds"] / max(t["calls"], 1)
print("  calls in flight at the simulator: at most %d, mean %.1f; a call %.1f ms there (set: %g ms)" % (t["max_in_flight"], held, call, latency))
print("  ratio = slots the pods kept taken %.1f/%d (%.2f) x of that at the simulator (%.2f) x set latency / a call there (%.2f) = %.2f" % (
    kept, slots, kept / slots, held / max(kept, 1e-9), latency / max(call, 1e-9), held / slots * latency / max(call, 1e-9)))' "$1" "$taken" "$2" "$3"
  }
  start_pushers() { # count
    ports=(); pids=()
    for i in $(seq "$1"); do
      port=$(free_port); ports+=("$port")
      PREWARM_POSTGRES_URL=$(pg_url "$pschema") PREWARM_REDIS_DB=6 PREWARM_ADMIN_PORT=$port \
        PREWARM_ADMIN_HOST=127.0.0.1 PREWARM_ADMIN_TOKEN=bench PREWARM_LOG_LEVEL=${BENCH_LOG_LEVEL:-warning} \
        PREWARM_PUSH_AB_URL="http://127.0.0.1:$sport/ab" PREWARM_PUSH_REC_URL="http://127.0.0.1:$sport/rec" \
        PREWARM_PUSH_MATERIAL_URL="http://127.0.0.1:$sport/material" \
        PREWARM_HTTP_OWN_POOL=${PUSH_OWN_POOL:-true} "$PUSHER" >"$tmp/pusher-$1-$i.log" 2>&1 &
      pids+=($!)
    done
    for i in $(seq 0 $(($1 - 1))); do wait_ready "${ports[$i]}" "${pids[$i]}" push-producer; done
  }
  run_job() { # job period; prints the wait-run line; sets run_s
    local answer attempt t0 t1
    # A run the pods caught up by themselves at start-up is waited out first, as the scoring
    # bench does (a forced trigger would fence it, but the two would share the machine).
    PREWARM_REDIS_DB=6 $BENCH wait-run --job "$1" --period "$2" --attempt 0 >/dev/null
    t0=$(now)
    answer=$(curl -sf -X POST -H 'Authorization: Bearer bench' "http://127.0.0.1:${ports[0]}/jobs/$1/trigger?period=$2&force=true")
    attempt=$(echo "$answer" | sed -n 's/.*"attempt":\([0-9]*\).*/\1/p')
    PREWARM_REDIS_DB=6 $BENCH wait-run --job "$1" --period "$2" --attempt "$attempt" | head -1
    t1=$(now); run_s=$(secs "$t0" "$t1")
  }
  stop_pushers() {
    rss=0; for pid in "${pids[@]}"; do r=$(rss_mb "$pid"); [ "$r" -gt "$rss" ] && rss=$r; done
    cpu=""; for pid in "${pids[@]}"; do cpu="$cpu $(cpu_s "$pid")"; done
    kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
    if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS"; cp "$tmp"/pusher-*.log "$BENCH_LOGS"/; fi
  }
  # The physical limit, measured in the same run: wrk makes the same calls to the same
  # simulator over the same loopback, one connection per slot and nothing between calls (C,
  # epoll, no Swift, no Redis, no Kafka). What it reaches is what these two cores' loopback
  # and wake-ups allow; the set latency alone gives the bound.
  wrk_rate() { # connections threads path; prints calls/s
    local rate
    rate=$(wrk -t"$2" -c"$1" -d"${BENCH_FLOOR_SECONDS:-5}s" "http://127.0.0.1:$sport$3" | awk '/^Requests\/sec/ { print $2 }')
    [ -n "$rate" ] || { echo "bench: wrk against the simulator failed" >&2; exit 1; }
    echo "$rate"
    sleep 0.2 # its last calls answered before the count restarts
    sim -X POST "http://127.0.0.1:$sport/stats/reset" >/dev/null
  }
  floor_line() { # items-per-second wrk-calls-per-second calls-per-item bound connections
    local wrk_items
    wrk_items=$(echo "$2 / $3" | bc -l)
    printf '  wrk, the same calls on %s connections: %.0f/s, %.2f of the bound; this run / wrk: %.2f\n' \
      "$5" "$wrk_items" "$(echo "$wrk_items / $4" | bc -l)" "$(echo "$1 / $wrk_items" | bc -l)"
  }
  declare -A prewarm_rate
  for pods in ${BENCH_PUSH_PODS:-1 2}; do
    predis flushdb >/dev/null; sim -X POST "http://127.0.0.1:$sport/stats/reset" >/dev/null
    floor=$(wrk_rate $((50 * pods)) "$pods" "/ab/v1/experiments/later_read/assignment?uid=5000001") || exit 1
    start_pushers "$pods"
    sim0=$(cpu_s "$sim_pid"); m0=$(machine_ticks)
    run_job book-rec-prewarm "$day" >"$tmp/result"; result=$(cat "$tmp/result"); machine=$(machine_share "$m0" "$(machine_ticks)")
    where=$(explain "$run_s" "$((50 * pods))" 10); stop_pushers; sim_cpu=$(echo "$(cpu_s "$sim_pid") - $sim0" | bc)
    rate=$(echo "$USERS / $run_s" | bc -l); bound=$((2500 * pods)); prewarm_rate[$pods]=$rate
    printf 'push: pre-warm of %d users, %d push-producer process(es): %8.3f s, %6.0f users/s; bound %d users/s; ratio %.2f (goal: at least 0.90)\n' \
      "$USERS" "$pods" "$run_s" "$rate" "$bound" "$(echo "$rate / $bound" | bc -l)"
    floor_line "$rate" "$floor" 2 "$bound" $((50 * pods))
    printf '  peak RSS %d MB, CPU s%s (simulator %s s); %s\n%s\n  %s\n' "$rss" "$cpu" "$sim_cpu" "$result" "$where" "$machine"
  done
  [ -z "${prewarm_rate[2]:-}" ] || [ -z "${prewarm_rate[1]:-}" ] ||
    printf 'push: two processes / one: %.2fx (goal: at least 1.80)\n' "$(echo "${prewarm_rate[2]} / ${prewarm_rate[1]}" | bc -l)"
fi
# The HTTP client's and the simulator server's costs, then the hourly push (BENCH_PUSH_EXTRAS=0
# skips them: make bench scale times the pre-warm alone).
if has push && [ "${BENCH_PUSH_EXTRAS:-1}" = 1 ]; then
  # The runtime's own HTTP/1 pool against async-http-client (PREWARM_HTTP_OWN_POOL=false), the
  # same one-process pre-warm each: the pool stays only while it saves at least a tenth of the
  # push's CPU (issue 22).
  declare -A client_cpu client_calls
  for own in true false; do
    predis flushdb >/dev/null; sim -X POST "http://127.0.0.1:$sport/stats/reset" >/dev/null
    PUSH_OWN_POOL=$own start_pushers 1
    run_job book-rec-prewarm "$day" >/dev/null
    stop_pushers
    client_cpu[$own]=$(echo "$cpu" | awk '{ print $1 }')
    client_calls[$own]=$(sim "http://127.0.0.1:$sport/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["total"]["calls"])')
    printf 'push: pre-warm, one process, http:// through %s: %8.3f s, CPU %s s, %.1f us of CPU a call\n' \
      "$([ "$own" = true ] && echo 'the own pool' || echo 'async-http-client')" "$run_s" "${client_cpu[$own]}" \
      "$(echo "${client_cpu[$own]} * 1000000 / ${client_calls[$own]}" | bc -l)"
  done
  printf 'push: async-http-client / the own pool, CPU: %.2fx (the pool is kept only at 1.10x or more)\n' \
    "$(echo "${client_cpu[false]} / ${client_cpu[true]}" | bc -l)"
  # The simulator's own server against Hummingbird's (`simulate-downstream --server
  # hummingbird`): wrk makes the same 10 ms calls to each on 100 connections, as the two pods
  # do; the own server is kept only while Hummingbird's would take a tenth or more of the two
  # cores at the two processes' rate (issue 22).
  hport=$(free_port)
  "$PREWARMCTL" simulate-downstream --server hummingbird --port "$hport" --latency 10ms >"$tmp/simulator-hb.log" 2>&1 &
  hb_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hport/stats" >/dev/null && break; sleep 0.1; done
  declare -A server_us
  for server in own hummingbird; do
    if [ "$server" = own ]; then p=$sport; pid=$sim_pid; else p=$hport; pid=$hb_pid; fi
    sim -X POST "http://127.0.0.1:$p/stats/reset" >/dev/null
    c0=$(cpu_s "$pid")
    wrk -t2 -c100 -d"${BENCH_FLOOR_SECONDS:-5}s" "http://127.0.0.1:$p/ab/v1/experiments/later_read/assignment?uid=5000001" >/dev/null
    c1=$(cpu_s "$pid"); sleep 0.2
    calls=$(sim "http://127.0.0.1:$p/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["total"]["calls"])')
    server_us[$server]=$(echo "($c1 - $c0) * 1000000 / $calls" | bc -l)
    printf 'push: the simulator on its %s server, wrk on 100 connections: %d calls, %.1f us of CPU a call; at the two processes'"'"' %.0f calls/s, %.0f %% of the two cores\n' \
      "$server" "$calls" "${server_us[$server]}" "$(echo "2 * ${prewarm_rate[2]}" | bc -l)" \
      "$(echo "${server_us[$server]} * 2 * ${prewarm_rate[2]} / 1000000 / 2 * 100" | bc -l)"
  done
  kill "$hb_pid" 2>/dev/null || true; hb_pid=
  printf 'push: Hummingbird / the own server, CPU a call: %.2fx (the own server is kept only while Hummingbird'"'"'s takes 10 %% of the cores or more)\n' \
    "$(echo "${server_us[hummingbird]} / ${server_us[own]}" | bc -l)"
  sim -X POST "http://127.0.0.1:$sport/stats/reset" >/dev/null
  floor=$(wrk_rate 50 1 "/material/v1/materials/m-1?uid=5000001") || exit 1
  start_pushers 1
  sim0=$(cpu_s "$sim_pid"); m0=$(machine_ticks)
  run_job book-rec-push "${day}21" >"$tmp/result"; result=$(cat "$tmp/result"); machine=$(machine_share "$m0" "$(machine_ticks)")
  where=$(explain "$run_s" 50 5); stop_pushers; sim_cpu=$(echo "$(cpu_s "$sim_pid") - $sim0" | bc)
  sent=$(predis hget "{prewarm:runs}:book-rec:stats:book-rec-push:${day}21:$(predis hget "{prewarm:runs}:run:book-rec-push:${day}21:progress" attempt)" sent)
  rate=$(echo "$USERS / $run_s" | bc -l)
  printf 'push: the 21:00 push of %d users (%s sent), material at 5 ms, one process: %8.3f s, %6.0f pushes/s; bound 10000/s; ratio %.2f (goal: at least 0.90)\n' \
    "$USERS" "$sent" "$run_s" "$rate" "$(echo "$rate / 10000" | bc -l)"
  floor_line "$rate" "$floor" 1 10000 50
  printf '  peak RSS %d MB (goal: under 200 MB), CPU s%s (simulator %s s); %s\n%s\n  %s\n' "$rss" "$cpu" "$sim_cpu" "$result" "$where" "$machine"
fi
if has push; then kill "$sim_pid" 2>/dev/null || true; sim_pid=; fi

if has scale; then
  # How cost grows with the work (make bench scale, not in the default set: about half an
  # hour): ingest, KA, scoring and the push pre-warm, each at three sizes a factor of 4 apart,
  # once each, through the scenarios above (single node, one process); per-item time and peak
  # RSS, and the curves drawn by gnuplot into docs/bench-scale.png. Ingest's per-item time is
  # its steady rate after the first batch (start-up and the group join are a fixed cost).
  command -v gnuplot >/dev/null || { echo "bench: needs gnuplot (make deps installs gnuplot-nox)" >&2; exit 1; }
  data=$tmp/scale.dat; : >"$data"
  self() { env BENCH_CLUSTER=0 "$@"; }
  scale_line() { # workload size seconds-per-item-source rss
    printf '%-8s %9d items   %8.2f us an item   peak RSS %4d MB\n' "$1" "$2" "$3" "$4"
    echo "$1 $2 $3 $4" >>"$data"
  }
  # One size of a workload: its scenario run with the environment given, its figure and RSS
  # read from the output by two seds; the figure is the run's seconds, or with `rate` first an
  # items-per-second rate (ingest's, after its first batch). Prints and records the size.
  scale_one() { # [rate] workload size scenario figure-sed rss-sed VARIABLE=value...
    local rate="" log value rss per
    if [ "$1" = rate ]; then rate=yes; shift; fi
    log=$tmp/scale-$1-$2.log
    self "${@:6}" "$0" "$3" >"$log" 2>&1 || { tail -5 "$log" >&2; exit 1; }
    value=$(sed -n "$4" "$log" | head -1); rss=$(sed -n "$5" "$log" | head -1)
    if [ -n "$rate" ]; then per=$(echo "1000000 / $value" | bc -l); else per=$(echo "$value * 1000000 / $2" | bc -l); fi
    scale_line "$1" "$2" "$per" "$rss"
  }
  for m in ${BENCH_SCALE_INGEST:-250000 1000000 4000000}; do
    scale_one rate ingest "$m" ingest 's/.*, then \([0-9]*\) events\/s.*/\1/p' 's/.*peak RSS \([0-9]*\) MB).*/\1/p' \
      BENCH_INGEST_COUNT="$m" BENCH_INGEST_ROUNDS=1
  done
  for m in ${BENCH_SCALE_KA:-250000 1000000 4000000}; do
    scale_one ka "$m" ka 's/.*verified in *\([0-9.]*\) s.*/\1/p' 's/.*peak RSS \([0-9]*\) MB (goal.*/\1/p' \
      BENCH_KA_USERS="$m" BENCH_KA_ROUNDS=1 BENCH_KA_SHOPS=0
  done
  for rows in ${BENCH_SCALE_SCORING:-2500000 10000000 40000000}; do
    scale_one scoring "$rows" scoring 's/.*process(es)  run *\([0-9.]*\) s.*/\1/p' 's/.*peak RSS \([0-9]*\) MB;.*/\1/p' \
      BENCH_SCORING_ROWS="$rows" BENCH_SCORING_USERS=$((rows / 100)) BENCH_SCORING_PODS=1
  done
  for n in ${BENCH_SCALE_PUSH:-25000 100000 400000}; do
    scale_one push "$n" push 's/.*process(es): *\([0-9.]*\) s,.*/\1/p' 's/^  peak RSS \([0-9]*\) MB, CPU.*/\1/p' \
      BENCH_PUSH_USERS="$n" BENCH_PUSH_PODS=1 BENCH_PUSH_EXTRAS=0
  done
  # Largest over smallest, per workload.
  awk '{ if (!($1 in first)) { first[$1] = $3; frss[$1] = $4; order[++n] = $1 } last[$1] = $3; lrss[$1] = $4 }
    END { for (i = 1; i <= n; i++) { w = order[i]
      printf "scale: %-8s per-item time largest / smallest %.2f (goal: at most 1.15); peak RSS %.2f, largest %d MB (goal: at most 1.25, under 200 MB)\n",
        w, last[w] / first[w], lrss[w] / frss[w], lrss[w] } }' "$data"
  # The curves: per-item time and peak RSS against the work, each workload's sizes as
  # multiples of its smallest.
  awk '{ if (!($1 in base)) { base[$1] = $2; t[$1] = $3; if (n++) print "\n" } print $1, $2 / base[$1], $3 / t[$1], $4, $2 }' \
    "$data" >"$tmp/scale.plot"
  titles=$(awk '{ print $1 }' "$data" | uniq | xargs); last=$(($(echo "$titles" | wc -w) - 1))
  mkdir -p docs
  gnuplot <<GP
set terminal pngcairo size 1100,450 font "sans,10"
set output "docs/bench-scale.png"
set multiplot layout 1,2 title "prewarm: cost as the work grows (make bench scale, $(nproc) cores, $(date -u +%Y-%m-%d))"
set logscale x 2
set xlabel "work, as a multiple of the smallest size"
set xtics (1, 2, 4, 8, 16)
set key top left
set title "time per item, relative to the smallest size"
set yrange [0:2]
plot for [i=0:$last] "$tmp/scale.plot" index i using 2:3 with linespoints lw 2 pt 7 title word("$titles", i + 1), \
  1.15 with lines dt 2 lc rgb "gray" title "goal: 1.15"
set title "peak RSS (MB)"
set yrange [0:250]
plot for [i=0:$last] "$tmp/scale.plot" index i using 2:4 with linespoints lw 2 pt 7 title word("$titles", i + 1), \
  200 with lines dt 2 lc rgb "gray" title "goal: under 200 MB"
unset multiplot
GP
  echo "scale: the curves are in docs/bench-scale.png"
fi
if [ -n "$CLUSTER_NODES" ] && [ "${BENCH_CLUSTER_REPLICAS:-0}" = 0 ]; then bench_cluster stop; fi
