#!/usr/bin/env bash
# Interleaved A/B of the end-to-end cycle bench on one dataset (benches/RESULTS.md): the machines
# are shared and noisy, so two builds are compared round by round on the same seeded data under
# the same background load, never against figures taken at another time.
#
#   scripts/bench-ab.sh <A cycle-bench exe> <B cycle-bench exe> [S|M|L] [rounds] [cycles]
#
# Build each side's bench binary with `cargo bench --bench cycle --no-run` in its own checkout
# (e.g. a `git worktree` at the base commit); the path is printed as "Executable benches/cycle.rs".
# Seeds the dataset once with B's writer (the newer build: its production-shaped schema is what
# both sides read) into a private redis-server in a temp dir, then runs
# `cycle run` alternately with A and B (fresh state DB each), one JSON line per run, and a summary
# with the per-round B/A ratios of the median cycle wall time.
#
# Env: CANARY_BENCH_PLATFORM=postgres seeds a private PostgreSQL server (scripts/lib/pg.sh;
# canary reads as a read-only role) instead of a SQLite file; CANARY_BENCH_BARE_INDEXES=1 drops
# the platform's history indexes after seeding (the graceful-degradation run).
set -euo pipefail
A=$1; B=$2; DS=${3:-M}; ROUNDS=${4:-8}; CYCLES=${5:-5}
PLATFORM="${CANARY_BENCH_PLATFORM:-sqlite}"
BARE="${CANARY_BENCH_BARE_INDEXES:-0}"
# shellcheck source=scripts/lib/pg.sh
. "$(dirname "$0")/lib/pg.sh"
for tool in redis-server redis-cli jq python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server jq python3)" >&2; exit 1; }
done
case "$PLATFORM" in sqlite) ;; postgres) find_pg ;; *) echo "CANARY_BENCH_PLATFORM must be sqlite or postgres" >&2; exit 2 ;; esac
DIR=$(mktemp -d)
chmod 755 "$DIR"
PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR" --save "" --appendonly no \
  --daemonize no --loglevel warning >"$DIR/redis.log" 2>&1 &
RP=$!
PG_CLUSTER="$DIR/pg"
trap 'kill $RP 2>/dev/null; wait $RP 2>/dev/null; stop_pg; rm -rf "$DIR"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
URL="redis://127.0.0.1:$PORT/0"
HISTORY_INDEXES="idx_executions_queued idx_executions_agent_started idx_executions_completed"
if [ "$PLATFORM" = postgres ]; then
  start_pg
  pg_admin postgres -c "CREATE DATABASE bench"
  "$B" seed "$DS" "postgres://postgres@127.0.0.1:$PG_PORT/bench?sslmode=disable" "$URL" >"$DIR/seed.json"
  if [ "$BARE" = 1 ]; then
    for idx in $HISTORY_INDEXES; do pg_admin bench -c "DROP INDEX IF EXISTS $idx"; done
  fi
  pg_admin bench -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
  grant_ro bench
  DB="postgres://$PG_RO_ROLE@127.0.0.1:$PG_PORT/bench?sslmode=disable"
else
  "$B" seed "$DS" "$DIR/platform.db" "$URL" >"$DIR/seed.json"
  if [ "$BARE" = 1 ]; then
    python3 - "$DIR/platform.db" $HISTORY_INDEXES <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for idx in sys.argv[2:]:
    db.execute(f"DROP INDEX IF EXISTS {idx}")
db.commit()
PY
  fi
  DB="$DIR/platform.db"
fi
echo "dataset $DS on $PLATFORM (bare indexes: $BARE): $(cat "$DIR/seed.json")"
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    exe=$A; [ "$side" = B ] && exe=$B
    rm -f "$DIR"/state.db*
    json=$("$exe" run "$DS" "$DB" "$URL" "$DIR/state.db" "$CYCLES")
    echo "$side $r $(echo "$json" | jq -c '{wall_ms_median, sqlite_ms_median, redis_ms_median,
      redis_slot_sets_ms_median, sql_statements, sql_rechecked, redis_round_trips, peak_rss_kb, violations: (.violations|add),
      evaluate_ms: .breakdown_ms.evaluate, executions_read: .snapshot.executions_read}')" \
      | tee -a "$DIR/runs.txt"
  done
done
python3 - "$DIR/runs.txt" <<'PY'
import json, statistics as st, sys
runs = {"A": [], "B": []}
for line in open(sys.argv[1]):
    side, _, doc = line.split(" ", 2)
    runs[side].append(json.loads(doc))
wall = {k: [d["wall_ms_median"] for d in v] for k, v in runs.items()}
ratios = [b / a for a, b in zip(wall["A"], wall["B"])]
for k in "AB":
    rss = [d["peak_rss_kb"] / 1024 for d in runs[k]]
    med = lambda f: st.median(d[f] for d in runs[k])
    print(f"{k}: cycle wall median {st.median(wall[k]):.1f} ms ({min(wall[k]):.1f}-{max(wall[k]):.1f}), "
          f"SQL {med('sqlite_ms_median'):.1f} ms, Redis {med('redis_ms_median'):.1f} ms, "
          + (f"of it slot sets {med('redis_slot_sets_ms_median'):.1f} ms, "
             if all(d.get("redis_slot_sets_ms_median") is not None for d in runs[k]) else "")
          + f"evaluate {med('evaluate_ms'):.1f} ms, "
          f"peak RSS median {st.median(rss):.1f} MB (max {max(rss):.1f})")
print("B/A per round:", ", ".join(f"{r:.2f}" for r in ratios),
      f"| median {st.median(ratios):.3f}, geometric mean {st.geometric_mean(ratios):.3f}")
PY
