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
scenarios=${*:-redis postgres kafka}
BOOT=$(cat "$PREWARM_KAFKA_BOOTSTRAP_FILE")
PGURL="$PREWARM_POSTGRES_URL password=$PREWARM_POSTGRES_PASSWORD"
echo "bench: $N items per scenario, release build, services on loopback, 2 cores"

if [[ $scenarios == *redis* ]]; then
  w=$($BENCH redis-set --count "$N" | sed -n 's/seconds=//p')
  for i in $(seq 0 $((N - 1))); do printf 'SET bench:key:%d value-%d\r\n' "$i" "$i"; done > "$tmp/redis.txt"
  t0=$(now); redis-cli -h 127.0.0.1 -p "$PREWARM_REDIS_PORT" -a "$PREWARM_REDIS_PASSWORD" --no-auth-warning --pipe < "$tmp/redis.txt" >/dev/null; t1=$(now)
  report "redis: $N pipelined SETs" "$w" "redis-cli --pipe" "$(secs "$t0" "$t1")"
fi
if [[ $scenarios == *postgres* ]]; then
  w=$($BENCH pg-copy --count "$N" --target bench_copy | sed -n 's/seconds=//p')
  seq 0 $((N - 1)) | awk '{ printf "%d\t%d\tnote-%d\n", $1, $1 % 5000, $1 }' > "$tmp/rows.tsv"
  psql "$PGURL" -qc "DROP TABLE IF EXISTS bench_copy_psql; CREATE TABLE bench_copy_psql (id bigint PRIMARY KEY, user_id bigint, note text)"
  t0=$(now); psql "$PGURL" -qc "\\copy bench_copy_psql FROM '$tmp/rows.tsv'"; t1=$(now)
  report "postgres: COPY of $N rows" "$w" "psql \\copy" "$(secs "$t0" "$t1")"
fi
if [[ $scenarios == *kafka* ]]; then
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
