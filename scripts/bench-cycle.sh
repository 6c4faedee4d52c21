#!/usr/bin/env bash
# End-to-end cycle bench over the S, M and L synthetic platforms (benches/RESULTS.md).
#
#   scripts/bench-cycle.sh [S|M|L|all] [cycles]        (default: all, 5 measured cycles)
#
# For each dataset: starts a private redis-server on a free port whose data lives in the cache
# dir, seeds the dataset once (re-seeded when older than CANARY_BENCH_MAX_AGE seconds, default
# 600: slot TTLs, running rows and recent completions are placed relative to the seeding instant,
# so a stale dataset would no longer be green), then runs the cycles in a FRESH process (the
# `cycle` bench binary: 1 warm-up + N measured cycles, peak RSS from /proc/self/status VmHWM) and
# a one-shot `canary check --no-persist --format json` under /usr/bin/time as a cold cross-check.
# One JSON line per dataset goes to $CACHE/results.jsonl; a markdown table is printed at the end.
#
# Env: CANARY_BENCH_DIR (cache, default target/bench-cycle), CANARY_BENCH_MAX_AGE (seconds).
set -euo pipefail

cd "$(dirname "$0")/.."
WHICH="${1:-all}"
CYCLES="${2:-5}"
CACHE="${CANARY_BENCH_DIR:-target/bench-cycle}"
MAX_AGE="${CANARY_BENCH_MAX_AGE:-600}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

case "$WHICH" in
  all) SETS=(S M L) ;;
  S|M|L|s|m|l) SETS=("${WHICH^^}") ;;
  *) echo "usage: $0 [S|M|L|all] [cycles]" >&2; exit 2 ;;
esac

for tool in redis-server redis-cli jq /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server jq time)" >&2; exit 1; }
done

echo "== building (release) ==" >&2
cargo build --release --bin canary >&2
BENCH_EXE="$(cargo bench --bench cycle --no-run 2>&1 | tee /dev/stderr \
  | sed -n 's/.*Executable benches\/cycle.rs (\(.*\))/\1/p' | tail -1)"
[ -x "$BENCH_EXE" ] || { echo "could not find the cycle bench executable" >&2; exit 1; }
CANARY_EXE="$PWD/target/release/canary"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PID=""
stop_redis() {
  if [ -n "$REDIS_PID" ]; then
    redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  fi
}
trap stop_redis EXIT

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
  DIR="$CACHE/$DS"
  mkdir -p "$DIR"
  start_redis "$DIR"
  URL="redis://127.0.0.1:$PORT/0"
  NOW=$(date +%s)
  SEEDED_AT=$(cat "$DIR/seeded_at" 2>/dev/null || echo 0)
  SEED_JSON=$(cat "$DIR/seed.json" 2>/dev/null || echo '{}')
  if [ $((NOW - SEEDED_AT)) -gt "$MAX_AGE" ] || [ ! -f "$DIR/platform.db" ]; then
    echo "== seeding $DS ==" >&2
    redis-cli -p "$PORT" flushall >/dev/null
    rm -f "$DIR/platform.db" "$DIR/platform.db-wal" "$DIR/platform.db-shm" "$DIR/seeded_at"
    SEED_JSON=$("$BENCH_EXE" seed "$DS" "$DIR/platform.db" "$URL")
    redis-cli -p "$PORT" save >/dev/null
    echo "$SEED_JSON" >"$DIR/seed.json"
    date +%s >"$DIR/seeded_at"
  else
    echo "== $DS: using the cache seeded $((NOW - SEEDED_AT)) s ago ==" >&2
  fi

  echo "== cycles $DS (1 warm-up + $CYCLES) ==" >&2
  rm -f "$DIR"/state.db*
  RUN_JSON=$("$BENCH_EXE" run "$DS" "$DIR/platform.db" "$URL" "$DIR/state.db" "$CYCLES")

  echo "== one-shot canary check $DS ==" >&2
  set +e
  CANARY__PLATFORM__SQLITE_PATH="$DIR/platform.db" CANARY__PLATFORM__REDIS_URL="$URL" \
    CANARY__STATE__PATH="$DIR/no-state.db" \
    /usr/bin/time -f '%M %e' -o "$DIR/time.txt" \
    "$CANARY_EXE" check --no-persist --format json >"$DIR/check.json" 2>"$DIR/check.err"
  CHECK_RC=$?
  set -e
  read -r CHECK_RSS CHECK_WALL <"$DIR/time.txt"
  CHECK_MS=$(jq '.duration_ms' "$DIR/check.json" 2>/dev/null || echo null)

  jq -c -n --argjson run "$RUN_JSON" --argjson seed "$SEED_JSON" \
    --argjson rc "$CHECK_RC" --argjson rss "${CHECK_RSS:-0}" --arg wall "${CHECK_WALL:-0}" \
    --argjson ms "${CHECK_MS:-null}" \
    '$run + {seed: $seed, check_exit: $rc, check_peak_rss_kb: $rss,
             check_process_wall_s: ($wall|tonumber), check_collect_evaluate_ms: $ms}' \
    | tee -a "$RESULTS.new"
  stop_redis
done
cat "$RESULTS.new" >>"$RESULTS"

echo
echo "| set | seed s | cycle wall median (min–max) ms | collect+eval ms | SQLite ms | Redis ms | SQL stmts | Redis RTs | commandstats Δ/cycle | peak RSS MB | violations | check: exit, RSS MB, wall s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
jq -r '"| \(.dataset) | \(.seed.seconds // "cached" | if type=="number" then (.*10|round/10) else . end) | \(.wall_ms_median*10|round/10) (\(.wall_ms_min*10|round/10)–\(.wall_ms_max*10|round/10)) | \(.collect_evaluate_ms_median*10|round/10) | \(.sqlite_ms_median*10|round/10) | \(.redis_ms_median*10|round/10) | \(.sql_statements|map(tostring)|join(",")) | \(.redis_round_trips|map(tostring)|join(",")) | \(.commandstats_delta_per_cycle|to_entries|map("\(.key)=\(.value)")|join(" ")) | \(.peak_rss_kb/1024*10|round/10) | \(.violations|add) | \(.check_exit), \(.check_peak_rss_kb/1024*10|round/10), \(.check_process_wall_s) |"' "$RESULTS.new"
