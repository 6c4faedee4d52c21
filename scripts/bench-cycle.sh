#!/usr/bin/env bash
# End-to-end cycle bench over the S, M and L synthetic platforms (benches/RESULTS.md).
#
#   scripts/bench-cycle.sh [S|M|L|all] [cycles]        (default: all, 5 measured cycles)
#   CANARY_BENCH_PLATFORM=postgres scripts/bench-cycle.sh [S|M|L|all] [cycles]
#   CANARY_BENCH_REDIS=cluster scripts/bench-cycle.sh [S|M|L|all] [cycles]
#
# For each dataset: starts a private redis-server on a free port whose data lives in the cache
# dir, seeds the dataset once (re-seeded when older than CANARY_BENCH_MAX_AGE seconds, default
# 600: slot TTLs, running rows and recent completions are placed relative to the seeding instant,
# so a stale dataset would no longer be green), then runs the cycles in a FRESH process (the
# `cycle` bench binary: 1 warm-up + N measured cycles, peak RSS from /proc/self/status VmHWM) and
# a one-shot `canary check --no-persist --format json` under /usr/bin/time as a cold cross-check.
# One JSON line per dataset goes to $CACHE/results.jsonl (with "platform" and the load average at
# the start of the dataset's cycles); a markdown table is printed at the end.
#
# Platform database (CANARY_BENCH_PLATFORM, default sqlite):
# - sqlite: one file per dataset, $CACHE/<set>/platform.db.
# - postgres: ONE private PostgreSQL cluster in $CACHE/pg/cluster (initdb once, kept between runs
#   like the Redis dumps), one database per dataset (bench_s, bench_m, bench_l), the Redis dump
#   and seeding marker in $CACHE/pg/<set>/. The server (initdb/pg_ctl/postgres from PATH, else
#   the highest /usr/lib/postgresql/*/bin; as root run as the `postgres` OS user via runuser, the
#   cluster owned by it) listens on a free 127.0.0.1 port only, TCP only (no unix socket), trust
#   authentication, and is stopped on exit. Durability is off (fsync, synchronous_commit,
#   full_page_writes): it only changes how writes reach the disk, and the measured cycles only
#   read. Seeding connects as the superuser, then VACUUM (ANALYZE) + CHECKPOINT (statistics,
#   hint bits and the visibility map as a production table has them, and no background catch-up
#   during the cycles). canary reads as `canary_ro`, a LOGIN role with only CONNECT, USAGE on
#   schema public and SELECT on its tables: the production shape (canary refuses a superuser
#   unless platform.allow_write_role). URLs carry no password and are never printed.
#
# Redis (CANARY_BENCH_REDIS, default single):
# - single: one redis-server per dataset, its dump cached in the dataset's dir (above).
# - cluster: a private 3-primary Redis Cluster per dataset (three `redis-server --cluster-enabled
#   yes` on free ports, bus ports free too, slots assigned in thirds with CLUSTER ADDSLOTSRANGE,
#   joined with CLUSTER MEET, waited for `cluster_state:ok`), in $CACHE/cluster/<set>/node{0,1,2},
#   started empty every run (a cluster's nodes.conf holds the ports, which change), so the dataset
#   is always re-seeded: with `canary fleet --seed-only --redis-cluster` (one pipeline per owning
#   node) into a fresh SQLite file. canary reads it through `platform.redis_cluster.nodes`; the
#   result line carries the last cycle's per-node round trips (`redis_route_last.cluster.nodes`)
#   and `commandstats` summed over the three nodes. SQLite platform only.
#
# Env: CANARY_BENCH_PLATFORM (sqlite | postgres), CANARY_BENCH_REDIS (single | cluster),
# CANARY_BENCH_DIR (cache, default target/bench-cycle), CANARY_BENCH_MAX_AGE (seconds).
set -euo pipefail

cd "$(dirname "$0")/.."
WHICH="${1:-all}"
CYCLES="${2:-5}"
CACHE="${CANARY_BENCH_DIR:-target/bench-cycle}"
MAX_AGE="${CANARY_BENCH_MAX_AGE:-600}"
PLATFORM="${CANARY_BENCH_PLATFORM:-sqlite}"
REDIS_MODE="${CANARY_BENCH_REDIS:-single}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

case "$WHICH" in
  all) SETS=(S M L) ;;
  S|M|L|s|m|l) SETS=("${WHICH^^}") ;;
  *) echo "usage: [CANARY_BENCH_PLATFORM=sqlite|postgres] $0 [S|M|L|all] [cycles]" >&2; exit 2 ;;
esac
case "$PLATFORM" in
  sqlite|postgres) ;;
  *) echo "CANARY_BENCH_PLATFORM must be sqlite or postgres, not $PLATFORM" >&2; exit 2 ;;
esac
case "$REDIS_MODE" in
  single) ;;
  cluster) [ "$PLATFORM" = sqlite ] || { echo "CANARY_BENCH_REDIS=cluster runs on the sqlite platform only" >&2; exit 2; } ;;
  *) echo "CANARY_BENCH_REDIS must be single or cluster, not $REDIS_MODE" >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib/pg.sh
. "$(dirname "$0")/lib/pg.sh"

for tool in redis-server redis-cli jq /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server jq time)" >&2; exit 1; }
done


echo "== building (release) ==" >&2
cargo build --release --bin canary >&2
BENCH_EXE="$(cargo bench --bench cycle --no-run 2>&1 | tee /dev/stderr \
  | sed -n 's/.*Executable benches\/cycle.rs (\(.*\))/\1/p' | tail -1)"
[ -x "$BENCH_EXE" ] || { echo "could not find the cycle bench executable" >&2; exit 1; }
CANARY_EXE="$PWD/target/release/canary"

if [ "$PLATFORM" = postgres ]; then find_pg; fi

REDIS_PID=""
CLUSTER_PIDS=()
CLUSTER_PORTS=()
stop_redis() {
  if [ -n "$REDIS_PID" ]; then
    redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  fi
  local i
  for i in "${!CLUSTER_PIDS[@]}"; do
    redis-cli -p "${CLUSTER_PORTS[$i]}" shutdown nosave >/dev/null 2>&1 || kill "${CLUSTER_PIDS[$i]}" 2>/dev/null || true
    wait "${CLUSTER_PIDS[$i]}" 2>/dev/null || true
  done
  CLUSTER_PIDS=()
  CLUSTER_PORTS=()
}

# A private 3-primary cluster, empty, in $1/node{0,1,2}; sets CLUSTER_PORTS and SEEDS.
start_cluster() {
  local dir="$1" i port bus node
  local ranges=("0 5460" "5461 10922" "10923 16383") buses=()
  for i in 0 1 2; do
    node="$dir/node$i"
    rm -rf "$node"; mkdir -p "$node"
    port="$(free_port)"; bus="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$node" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$node/nodes.conf" --cluster-port "$bus" \
      --cluster-node-timeout 5000 --daemonize no --loglevel warning >"$node/redis.log" 2>&1 &
    CLUSTER_PIDS+=($!); CLUSTER_PORTS+=("$port"); buses+=("$bus")
  done
  for i in 0 1 2; do
    for _ in $(seq 1 100); do
      redis-cli -p "${CLUSTER_PORTS[$i]}" ping 2>/dev/null | grep -q PONG && break
      sleep 0.1
    done
    # shellcheck disable=SC2086
    redis-cli -p "${CLUSTER_PORTS[$i]}" cluster addslotsrange ${ranges[$i]} | grep -q OK \
      || { echo "cluster node $i did not take its slots (see $dir/node$i/redis.log)" >&2; exit 1; }
  done
  for i in 1 2; do
    redis-cli -p "${CLUSTER_PORTS[0]}" cluster meet 127.0.0.1 "${CLUSTER_PORTS[$i]}" "${buses[$i]}" >/dev/null
  done
  for _ in $(seq 1 300); do
    local ok=0
    for i in 0 1 2; do
      if redis-cli -p "${CLUSTER_PORTS[$i]}" cluster info | grep -q 'cluster_state:ok' \
        && redis-cli -p "${CLUSTER_PORTS[$i]}" cluster info | grep -q 'cluster_known_nodes:3'; then
        ok=$((ok + 1))
      fi
    done
    if [ "$ok" = 3 ]; then
      SEEDS="127.0.0.1:${CLUSTER_PORTS[0]},127.0.0.1:${CLUSTER_PORTS[1]},127.0.0.1:${CLUSTER_PORTS[2]}"
      return 0
    fi
    sleep 0.1
  done
  echo "cluster not ok within 30 s" >&2; exit 1
}

# The seed sizes of `SeedSpec::named` (S ×1, M ×10, L ×100).
seed_args() {
  local scale
  case "$1" in S) scale=1 ;; M) scale=10 ;; L) scale=100 ;; esac
  echo "--agents $((100 * scale)) --rows $((10000 * scale)) --slots $((300 * scale)) --cascade-rows $((5000 * scale))"
}

PG_CLUSTER="$CACHE/pg/cluster"
trap 'stop_redis; stop_pg' EXIT
if [ "$PLATFORM" = postgres ]; then start_pg; fi

start_redis() { # $1 = data dir (dump.rdb loaded if present)
  PORT="$(free_port)"
  redis-server --port "$PORT" --bind 127.0.0.1 --dir "$1" --dbfilename dump.rdb \
    --save "" --appendonly no --daemonize no --loglevel warning >"$1/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do
    if redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; then
      # Still loading a dump answers PING with an error; wait until it is done.
      if redis-cli -p "$PORT" info persistence | grep -q '^loading:0'; then return 0; fi
    fi
    sleep 0.1
  done
  echo "redis-server did not start (see $1/redis.log)" >&2; exit 1
}

RESULTS="$CACHE/results.jsonl"
: >"$RESULTS.new"
for DS in "${SETS[@]}"; do
  if [ "$PLATFORM" = postgres ]; then
    DIR="$CACHE/pg/$DS"
    PG_DB="bench_${DS,,}"
    # Seeding needs the superuser (it creates the schema); canary reads as the read-only role.
    SEED_DB="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable"
    READ_DB="postgres://$PG_RO_ROLE@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable"
    HAVE_DB="$(pg_admin postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$PG_DB'")"
  else
    DIR="$CACHE/$DS"
    SEED_DB="$DIR/platform.db"
    READ_DB="$DIR/platform.db"
    HAVE_DB="$([ -f "$DIR/platform.db" ] && echo 1 || echo 0)"
  fi
  if [ "$REDIS_MODE" = cluster ]; then
    DIR="$CACHE/cluster/$DS"
    SEED_DB="$DIR/platform.db"
    READ_DB="$DIR/platform.db"
    mkdir -p "$DIR"
    start_cluster "$DIR"
    URL="cluster:$SEEDS"
    echo "== seeding $DS on a 3-primary cluster (canary fleet --seed-only --redis-cluster) ==" >&2
    rm -f "$DIR/platform.db" "$DIR/platform.db-wal" "$DIR/platform.db-shm"
    T0=$(date +%s%N)
    # shellcheck disable=SC2046
    "$CANARY_EXE" fleet --seed-only --sqlite-path "$SEED_DB" --redis-cluster "$SEEDS" \
      $(seed_args "$DS") >"$DIR/seed.txt"
    SEED_S=$(( ($(date +%s%N) - T0) / 1000000 ))
    PIPES="$(sed -n 's/.*Redis commands in \([0-9]*\) pipelines.*/\1/p' "$DIR/seed.txt")"
    CMDS="$(sed -n 's/.*(\([0-9]*\) Redis commands in.*/\1/p' "$DIR/seed.txt")"
    KEYS_PER_NODE="$(for p in "${CLUSTER_PORTS[@]}"; do redis-cli -p "$p" dbsize; done | paste -sd, -)"
    SEED_JSON=$(jq -c -n --argjson ms "$SEED_S" --argjson pipes "${PIPES:-null}" \
      --argjson cmds "${CMDS:-null}" --arg keys "$KEYS_PER_NODE" \
      '{seconds: ($ms / 1000), redis_commands: $cmds, redis_pipelines: $pipes, keys_per_node: $keys}')
    echo "$SEED_JSON" >"$DIR/seed.json"
  else
  mkdir -p "$DIR"
  start_redis "$DIR"
  URL="redis://127.0.0.1:$PORT/0"
  NOW=$(date +%s)
  SEEDED_AT=$(cat "$DIR/seeded_at" 2>/dev/null || echo 0)
  SEED_JSON=$(cat "$DIR/seed.json" 2>/dev/null || echo '{}')
  if [ $((NOW - SEEDED_AT)) -gt "$MAX_AGE" ] || [ "$HAVE_DB" != 1 ]; then
    echo "== seeding $DS ($PLATFORM) ==" >&2
    redis-cli -p "$PORT" flushall >/dev/null
    rm -f "$DIR/seeded_at"
    if [ "$PLATFORM" = postgres ]; then
      pg_admin postgres -c "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB"
    else
      rm -f "$DIR/platform.db" "$DIR/platform.db-wal" "$DIR/platform.db-shm"
    fi
    SEED_JSON=$("$BENCH_EXE" seed "$DS" "$SEED_DB" "$URL")
    if [ "$PLATFORM" = postgres ]; then
      T0=$(date +%s%N)
      # The seeder ANALYZEs; VACUUM also sets hint bits and the visibility map (what autovacuum
      # gives a production table), and the checkpoint flushes it all before anything is timed.
      pg_admin "$PG_DB" -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
      grant_ro "$PG_DB"
      VACUUM_MS=$((($(date +%s%N) - T0) / 1000000))
      DB_BYTES="$(pg_admin "$PG_DB" -c "SELECT pg_database_size(current_database())")"
      SEED_JSON=$(jq -c --argjson b "$DB_BYTES" --argjson v "$VACUUM_MS" \
        '.db_bytes = $b | .vacuum_analyze_seconds = $v / 1000' <<<"$SEED_JSON")
    fi
    redis-cli -p "$PORT" save >/dev/null
    echo "$SEED_JSON" >"$DIR/seed.json"
    date +%s >"$DIR/seeded_at"
  else
    echo "== $DS ($PLATFORM): using the cache seeded $((NOW - SEEDED_AT)) s ago ==" >&2
  fi
  fi

  LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "== cycles $DS $PLATFORM (1 warm-up + $CYCLES), load average $LOADAVG ==" >&2
  rm -f "$DIR"/state.db*
  RUN_JSON=$("$BENCH_EXE" run "$DS" "$READ_DB" "$URL" "$DIR/state.db" "$CYCLES")

  echo "== one-shot canary check $DS ==" >&2
  if [ "$PLATFORM" = postgres ]; then
    DB_ENV=(CANARY__PLATFORM__DATABASE_URL="$READ_DB")
  else
    DB_ENV=(CANARY__PLATFORM__SQLITE_PATH="$READ_DB")
  fi
  if [ "$REDIS_MODE" = cluster ]; then
    REDIS_ENV=(CANARY__PLATFORM__REDIS_URL="redis://${SEEDS%%,*}/0"
      CANARY__PLATFORM__REDIS_CLUSTER__NODES="[${SEEDS//,/, }]")
  else
    REDIS_ENV=(CANARY__PLATFORM__REDIS_URL="$URL")
  fi
  set +e
  env "${DB_ENV[@]}" "${REDIS_ENV[@]}" \
    CANARY__STATE__PATH="$DIR/no-state.db" \
    /usr/bin/time -f '%M %e' -o "$DIR/time.txt" \
    "$CANARY_EXE" check --no-persist --format json >"$DIR/check.json" 2>"$DIR/check.err"
  CHECK_RC=$?
  set -e
  read -r CHECK_RSS CHECK_WALL <"$DIR/time.txt"
  CHECK_MS=$(jq '.duration_ms' "$DIR/check.json" 2>/dev/null || echo null)

  jq -c -n --argjson run "$RUN_JSON" --argjson seed "$SEED_JSON" \
    --argjson rc "$CHECK_RC" --argjson rss "${CHECK_RSS:-0}" --arg wall "${CHECK_WALL:-0}" \
    --argjson ms "${CHECK_MS:-null}" --arg platform "$PLATFORM" --arg load "$LOADAVG" \
    --arg server "${PG_VERSION_TEXT:-}" --arg redis "$REDIS_MODE" \
    '{platform: $platform, redis: $redis} + $run + {seed: $seed, check_exit: $rc, check_peak_rss_kb: $rss,
             check_process_wall_s: ($wall|tonumber), check_collect_evaluate_ms: $ms,
             loadavg: $load}
     + (if $server == "" then {} else {server_version: $server} end)' \
    | tee -a "$RESULTS.new"
  stop_redis
done
cat "$RESULTS.new" >>"$RESULTS"

echo
if [ "$REDIS_MODE" = cluster ]; then
  echo
  echo "Per node (last measured cycle): round trips, from diagnostics.collect.redis_route.cluster.nodes"
  jq -r '"\(.dataset): " + ([.redis_route_last.cluster.nodes[]? | "\(.addr) \(.round_trips) RTs"] | join(", ")) + " + discovery \(.redis_route_last.discovery_round_trips // "?")"' "$RESULTS.new"
fi
echo
echo "| platform | set | seed s | cycle wall median (min–max) ms | collect+eval ms | SQL ms | Redis ms | SQL stmts | Redis RTs | commandstats Δ/cycle | peak RSS MB | violations | check: exit, RSS MB, wall s | load avg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
jq -r '"| \(.platform)\(if .redis == "cluster" then " + 3-primary cluster" else "" end) | \(.dataset) | \(.seed.seconds // "cached" | if type=="number" then (.*10|round/10) else . end) | \(.wall_ms_median*10|round/10) (\(.wall_ms_min*10|round/10)–\(.wall_ms_max*10|round/10)) | \(.collect_evaluate_ms_median*10|round/10) | \(.sqlite_ms_median*10|round/10) | \(.redis_ms_median*10|round/10) | \(.sql_statements|map(tostring)|join(",")) | \(.redis_round_trips|map(tostring)|join(",")) | \(.commandstats_delta_per_cycle|to_entries|map("\(.key)=\(.value)")|join(" ")) | \(.peak_rss_kb/1024*10|round/10) | \(.violations|add) | \(.check_exit), \(.check_peak_rss_kb/1024*10|round/10), \(.check_process_wall_s) | \(.loadavg) |"' "$RESULTS.new"
