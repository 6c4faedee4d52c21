#!/usr/bin/env bash
# Issue 11 §7 soak: `canary run` at a 1 s interval over a busy synthetic fleet (`canary fleet`,
# default 240 executions/min) for longer than E-02's retention (shortened to RETENTION seconds,
# window = RETENTION/2; E-03's window, which also bounds how far back terminal rows are read, too),
# sampling the daemon's RSS and the state database every SAMPLE seconds.
# RSS and state size should level off once E-02's memory has filled and starts forgetting.
#
#   scripts/soak.sh CANARY_EXE [DURATION_S] [RETENTION_S] [SAMPLE_S]   (default 600 120 30)
#   SOAK_RATE=6000 scripts/soak.sh …   (executions per minute, default 240: a faster-growing history)
#
# Prints one line per sample: elapsed s, VmRSS kB, the state database's size in bytes after a
# checkpoint (page_count x page_size: the data, not the WAL's page churn), the WAL file's size,
# cycles, memory_seen_terminal rows, violation_episodes rows, the platform SQLite file's size.
# Needs redis-server, redis-cli, sqlite3, python3.
set -euo pipefail
EXE="$1"; DURATION="${2:-600}"; RETENTION="${3:-120}"; SAMPLE="${4:-30}"
RATE="${SOAK_RATE:-240}"
DIR="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"; HTTP="$(free_port)"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
  --loglevel warning >"$DIR/redis.log" 2>&1 &
RPID=$!
FPID=""; CPID=""
cleanup() {
  [ -n "$CPID" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null
  [ -n "$FPID" ] && kill -INT "$FPID" 2>/dev/null && wait "$FPID" 2>/dev/null
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill "$RPID" 2>/dev/null
  wait "$RPID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 1 100); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
URL="redis://127.0.0.1:$PORT/0"
"$EXE" fleet --sqlite-path "$DIR/platform.db" --redis-url "$URL" --init \
  --duration "$((DURATION + 60))s" --rate "$RATE" >"$DIR/fleet.log" 2>&1 &
FPID=$!
sleep 3
cat >"$DIR/canary.yaml" <<YAML
platform:
  sqlite_path: $DIR/platform.db
  redis_url: $URL
  redis_response_timeout: 10s
state:
  path: $DIR/state.db
schedule:
  interval: 1s
  startup_delay: 0s
  jitter: 0s
http:
  bind: 127.0.0.1:$HTTP
  admin_token: soak-token-0123456789
log:
  level: warn
invariants:
  E-02:
    window_seconds: $((RETENTION / 2))
    retention_seconds: $RETENTION
  E-03:
    window_seconds: $((RETENTION / 2))
YAML
"$EXE" run --config "$DIR/canary.yaml" >"$DIR/canary.log" 2>&1 &
CPID=$!
start=$(date +%s)
echo "elapsed_s rss_kb db_bytes wal_bytes cycles seen_terminal episodes platform_bytes"
while :; do
  sleep "$SAMPLE"
  now=$(date +%s); el=$((now - start))
  kill -0 "$CPID" 2>/dev/null || { echo "canary run exited:"; tail -5 "$DIR/canary.log"; exit 1; }
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$CPID/status")
  sqlite3 -cmd '.timeout 5000' "$DIR/state.db" 'PRAGMA wal_checkpoint(PASSIVE);' >/dev/null 2>&1 || true
  wal=$(stat -c %s "$DIR/state.db-wal" 2>/dev/null || echo 0)
  q() { sqlite3 -cmd '.timeout 5000' "file:$DIR/state.db?mode=ro" "$1" 2>/dev/null || echo '?'; }
  db=$(( $(q 'PRAGMA page_count') * $(q 'PRAGMA page_size') ))
  echo "$el $rss $db $wal $(q 'SELECT COUNT(*) FROM cycles') $(q 'SELECT COUNT(*) FROM memory_seen_terminal') $(q 'SELECT COUNT(*) FROM violation_episodes') $(stat -c %s "$DIR/platform.db")"
  [ "$el" -ge "$DURATION" ] && break
done
