#!/usr/bin/env bash
# Issue 11 §1 reproduction: N leaked slot members on one agent of a `canary fleet --init`
# platform, then `canary check` under /usr/bin/time (peak RSS, wall time) and the state DB's size
# after each of CYCLES checks (WAL checkpointed).
#
#   scripts/flood.sh CANARY_EXE MEMBERS [CYCLES]
#
# Prints one line per check: cycle, exit code, max RSS kB, wall s, state bytes, growth bytes,
# violation count the cycle result reports. Needs redis-server, redis-cli, sqlite3, jq, python3.
set -euo pipefail
EXE="$1"; N="$2"; CYCLES="${3:-3}"
DIR="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
  --loglevel warning >"$DIR/redis.log" 2>&1 &
RPID=$!
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill "$RPID"; wait "$RPID" 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
URL="redis://127.0.0.1:$PORT/0"
"$EXE" fleet --sqlite-path "$DIR/platform.db" --redis-url "$URL" --init --duration 1s >/dev/null 2>&1
# Leak N members in batches (one pipe, 10 000 members per ZADD).
python3 - "$N" <<'PY' | redis-cli -p "$PORT" --pipe >/dev/null
import sys, time
n = int(sys.argv[1]); ts = int(time.time() * 1000) - 3_600_000
def cmd(*a):
    out = [f"*{len(a)}\r\n"]
    for x in a:
        x = str(x); out.append(f"${len(x.encode())}\r\n{x}\r\n")
    return "".join(out)
w = sys.stdout.write
for start in range(0, n, 10000):
    args = ["ZADD", "agent:slots:fleet-01"]
    for i in range(start, min(n, start + 10000)):
        args += [ts, f"leaked-{i}"]
    w(cmd(*args))
PY
cat >"$DIR/canary.yaml" <<YAML
platform:
  sqlite_path: $DIR/platform.db
  redis_url: $URL
  redis_response_timeout: 60s
state:
  path: $DIR/state.db
log:
  level: warn
YAML
prev=0
for c in $(seq 1 "$CYCLES"); do
  set +e
  /usr/bin/time -f '%M %e' -o "$DIR/time" "$EXE" check --config "$DIR/canary.yaml" --format json ${CHECK_ARGS:-} >"$DIR/out.json" 2>"$DIR/err"
  rc=$?
  set -e
  sqlite3 "$DIR/state.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  size=$(( $(stat -c %s "$DIR/state.db") + $(stat -c %s "$DIR/state.db-wal" 2>/dev/null || echo 0) ))
  count=$(jq '.violation_count // (.violations | length)' "$DIR/out.json" 2>/dev/null || echo '?')
  read -r rss wall < <(tail -1 "$DIR/time")
  [ "$rc" -ge 2 ] && { head -c 600 "$DIR/err"; jq -c ".sources_unavailable, .diagnostics.unknown_reasons" "$DIR/out.json"; } >&2
  echo "cycle=$c rc=$rc max_rss_kb=$rss wall_s=$wall state_bytes=$size growth_bytes=$((size - prev)) violations=$count"
  prev=$size
done
