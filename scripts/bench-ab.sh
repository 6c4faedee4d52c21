#!/usr/bin/env bash
# Interleaved A/B of the end-to-end cycle bench on one dataset (benches/RESULTS.md): the machines
# are shared and noisy, so two builds are compared round by round on the same seeded data under
# the same background load, never against figures taken at another time.
#
#   scripts/bench-ab.sh <A cycle-bench exe> <B cycle-bench exe> [S|M|L] [rounds] [cycles]
#
# Build each side's bench binary with `cargo bench --bench cycle --no-run` in its own checkout
# (e.g. a `git worktree` at the base commit); the path is printed as "Executable benches/cycle.rs".
# Seeds the dataset once with A's writer into a private redis-server in a temp dir, then runs
# `cycle run` alternately with A and B (fresh state DB each), one JSON line per run, and a summary
# with the per-round B/A ratios of the median cycle wall time.
set -euo pipefail
A=$1; B=$2; DS=${3:-M}; ROUNDS=${4:-8}; CYCLES=${5:-5}
for tool in redis-server redis-cli jq python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server jq python3)" >&2; exit 1; }
done
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR" --save "" --appendonly no \
  --daemonize no --loglevel warning >"$DIR/redis.log" 2>&1 &
RP=$!
trap 'kill $RP 2>/dev/null; wait $RP 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
URL="redis://127.0.0.1:$PORT/0"
"$A" seed "$DS" "$DIR/platform.db" "$URL" >"$DIR/seed.json"
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    exe=$A; [ "$side" = B ] && exe=$B
    rm -f "$DIR"/state.db*
    json=$("$exe" run "$DS" "$DIR/platform.db" "$URL" "$DIR/state.db" "$CYCLES")
    echo "$side $r $(echo "$json" | jq -c '{wall_ms_median, sqlite_ms_median, redis_ms_median,
      sql_statements, redis_round_trips, peak_rss_kb, violations: (.violations|add)}')" \
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
    print(f"{k}: cycle wall median {st.median(wall[k]):.1f} ms ({min(wall[k]):.1f}-{max(wall[k]):.1f}), "
          f"peak RSS median {st.median(rss):.1f} MB (max {max(rss):.1f})")
print("B/A per round:", ", ".join(f"{r:.2f}" for r in ratios),
      f"| median {st.median(ratios):.3f}, geometric mean {st.geometric_mean(ratios):.3f}")
PY
