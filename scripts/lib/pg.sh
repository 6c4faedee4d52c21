# A private PostgreSQL server for the bench scripts (sourced, not run): find the server binaries,
# initdb once into $PG_CLUSTER (C locale, trust), start it on a free loopback port with durability
# off (the benches only read what they seeded), and stop it. Used by bench-cycle.sh and
# bench-ab.sh, so both measure against the same server setup.
#
# Needs: PG_CLUSTER (the cluster's directory) set before `start_pg`; `free_port`, below.
# Sets: PG_BIN, PG_PORT, PG_UP, PG_VERSION_TEXT; PG_RO_ROLE is the read-only role canary reads as.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PG_BIN=""
PG_UP=""
PG_RO_ROLE=canary_ro

# Fails with the install hint when the server binaries or the postgres OS user are missing.
find_pg() {
  command -v psql >/dev/null || { echo "missing psql (apt-get install postgresql)" >&2; exit 1; }
  local d
  for d in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")" \
           $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then PG_BIN="$d"; break; fi
  done
  [ -n "$PG_BIN" ] || { echo "PostgreSQL server binaries not found on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2; exit 1; }
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "running as root, and there is no postgres OS user to run PostgreSQL as" >&2; exit 1; }
  fi
}

# A PostgreSQL server binary, as the postgres OS user when running as root (it refuses root).
pg_tool() {
  local tool="$1"; shift
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN/$tool" "$@"; else "$PG_BIN/$tool" "$@"; fi
}

stop_pg() {
  if [ -n "$PG_UP" ]; then
    pg_tool pg_ctl stop -D "$PG_CLUSTER/data" -m fast -w -t 60 >/dev/null 2>&1 || true
    PG_UP=""
  fi
}

# psql as the superuser on database $1 (TCP, trust, no password); the remaining args go to psql.
pg_admin() {
  local db="$1"; shift
  psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "$@"
}

start_pg() {
  mkdir -p "$PG_CLUSTER"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_CLUSTER"; fi
  if [ ! -f "$PG_CLUSTER/data/PG_VERSION" ]; then
    echo "== initdb (once: $PG_CLUSTER) ==" >&2
    pg_tool initdb -D "$PG_CLUSTER/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
      >"$PG_CLUSTER/initdb.log" 2>&1 || { echo "initdb failed (see $PG_CLUSTER/initdb.log)" >&2; exit 1; }
  fi
  PG_PORT="$(free_port)"
  # Durability off: the cycles only read. TCP on loopback only, no unix socket.
  pg_tool pg_ctl start -D "$PG_CLUSTER/data" -l "$PG_CLUSTER/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || { echo "postgres did not start (see $PG_CLUSTER/postgres.log)" >&2; exit 1; }
  PG_UP=1
  pg_admin postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_RO_ROLE') THEN CREATE ROLE $PG_RO_ROLE LOGIN; END IF; END \$\$"
  PG_VERSION_TEXT="$(pg_admin postgres -c 'SHOW server_version')"
  echo "== PostgreSQL $PG_VERSION_TEXT on 127.0.0.1:$PG_PORT ==" >&2
}

# Grants the read-only role what canary needs on database $1 (after seeding).
grant_ro() {
  pg_admin "$1" -c "GRANT CONNECT ON DATABASE $1 TO $PG_RO_ROLE" \
    -c "GRANT USAGE ON SCHEMA public TO $PG_RO_ROLE" \
    -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO $PG_RO_ROLE"
}
