#!/usr/bin/env bash
# Records the small real samples in this directory with the local PostgreSQL
# 15 and pgbench (Debian packages postgresql-15, postgresql-contrib). Run as
# root: the server and pgbench run as the `postgres` OS user on a throwaway
# cluster in a temporary directory, TCP 127.0.0.1 on a free port.
#   bash tests/data/record.sh            # writes into tests/data/
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
PORT=${PORT:-55491}
T=$(mktemp -d); chown postgres: "$T"; chmod 755 "$T"
as_pg() { runuser -u postgres -- "$@"; }
trap 'as_pg $PGBIN/pg_ctl -D "$T/data" -w stop -m fast >/dev/null 2>&1 || true; rm -rf "$T"' EXIT
as_pg $PGBIN/initdb -D "$T/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg $PGBIN/pg_ctl -D "$T/data" -l "$T/server.log" -w -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
  -c shared_preload_libraries=pg_stat_statements -c lc_messages=C" start >/dev/null
PSQL="$PGBIN/psql -h 127.0.0.1 -p $PORT -U postgres -X -q -d postgres"
PGB="$PGBIN/pgbench -h 127.0.0.1 -p $PORT -U postgres"
as_pg $PGB -i -s 2 -q postgres >/dev/null 2>&1
as_pg $PSQL -c "CREATE EXTENSION pg_stat_statements"
as_pg $PSQL <<SQL
ALTER SYSTEM SET logging_collector = on;
ALTER SYSTEM SET log_destination = 'stderr,csvlog,jsonlog';
ALTER SYSTEM SET log_directory = 'log';
ALTER SYSTEM SET log_filename = 'rate50';
ALTER SYSTEM SET log_rotation_size = 0;
ALTER SYSTEM SET log_line_prefix = '%m [%p] %q%u@%d app=%a ';
ALTER SYSTEM SET log_min_duration_statement = 0;
ALTER SYSTEM SET log_connections = on;
ALTER SYSTEM SET log_disconnections = on;
SQL
as_pg $PGBIN/pg_ctl -D "$T/data" -w restart -m fast >/dev/null
as_pg $PSQL -c "SELECT pg_stat_statements_reset()" >/dev/null
# 1. Open-loop TPC-B, 2 s at 50 tx/s: the same run in csvlog, jsonlog and
#    stderr, its pgbench -l logs (with -R: a schedule-lag column), and a
#    pg_stat_statements snapshot.
(cd "$T" && as_pg $PGB -c 4 -j 2 -T 2 -R 50 -l --log-prefix="$T/rate50" postgres > "$T/rate50.summary.txt" 2>&1)
as_pg $PSQL -A -F, -P footer=off -c "SELECT queryid, calls, query FROM pg_stat_statements WHERE query LIKE '%pgbench%' OR query IN ('BEGIN','END') ORDER BY queryid" > "$T/pgss.csv"
# 2. Extended protocol (parse/bind/execute) and prepared statements.
as_pg $PSQL -c "ALTER SYSTEM SET log_filename = 'extended'" -c "SELECT pg_reload_conf()" >/dev/null; sleep 1
as_pg $PGB -c 2 -j 1 -T 1 -R 20 -M extended postgres >/dev/null 2>&1
as_pg $PGB -c 2 -j 1 -t 10 -M prepared postgres >/dev/null 2>&1
# 3. log_statement = 'all' with log_duration (statement, then a bare duration).
as_pg $PSQL -c "ALTER SYSTEM SET log_filename = 'logstatement'" -c "ALTER SYSTEM SET log_min_duration_statement = -1" \
  -c "ALTER SYSTEM SET log_statement = 'all'" -c "ALTER SYSTEM SET log_duration = on" -c "SELECT pg_reload_conf()" >/dev/null; sleep 1
as_pg $PGB -c 2 -j 1 -t 5 postgres >/dev/null 2>&1
# 4. Closed loop (no -R), by transaction count.
(cd "$T" && as_pg $PGB -c 2 -j 2 -t 100 -S -l --log-prefix="$T/closed" postgres > "$T/closed.summary.txt" 2>&1)
as_pg $PGBIN/pg_ctl -D "$T/data" -w stop -m fast >/dev/null
L="$T/data/log"
gzip -9 -c "$L/rate50.csv" > "$OUT/rate50.csv.gz"
gzip -9 -c "$L/rate50.json" > "$OUT/rate50.json.gz"
bzip2 -9 -c "$L/rate50" > "$OUT/rate50.stderr.log.bz2"
cp "$L/extended.csv" "$OUT/extended.csv"
cp "$L/logstatement" "$OUT/logstatement.stderr.log"
cp "$T/pgss.csv" "$OUT/rate50.pg_stat_statements.csv"
for f in "$T"/rate50.[0-9]* "$T"/closed.[0-9]*; do
  b=$(basename "$f"); cp "$f" "$OUT/pgbench.$b"
done
sed -n '/^transaction type/,$p' "$T/rate50.summary.txt" > "$OUT/pgbench.rate50.summary.txt"
sed -n '/^transaction type/,$p' "$T/closed.summary.txt" > "$OUT/pgbench.closed.summary.txt"
chmod 644 "$OUT"/*
ls -la "$OUT"
