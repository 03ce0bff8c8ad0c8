#!/usr/bin/env bash
# Records tests/data/otel/spans.otlp.jsonl: real OTLP/JSON spans from the
# OpenTelemetry JS SDK (packages from the npm registry) querying a throwaway
# local PostgreSQL 15 cluster (as the `postgres` OS user; run as root).
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
PORT=${PORT:-55492}
W=$(mktemp -d); T=$(mktemp -d); chown postgres: "$T"
as_pg() { runuser -u postgres -- "$@"; }
trap 'as_pg $PGBIN/pg_ctl -D "$T/data" -w stop -m fast >/dev/null 2>&1 || true; rm -rf "$T" "$W"' EXIT
as_pg $PGBIN/initdb -D "$T/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg $PGBIN/pg_ctl -D "$T/data" -l "$T/server.log" -w -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null
as_pg $PGBIN/pgbench -h 127.0.0.1 -p $PORT -U postgres -i -s 1 -q postgres >/dev/null 2>&1
cp "$OUT/record.js" "$W/"
(cd "$W" && npm init -y >/dev/null && npm install --no-audit --no-fund @opentelemetry/api@1 \
  @opentelemetry/sdk-trace-node@2.12.1 @opentelemetry/sdk-trace-base@2.12.1 @opentelemetry/resources@2.12.1 \
  @opentelemetry/exporter-trace-otlp-http@0.223.1 @opentelemetry/instrumentation@0.223.0 \
  @opentelemetry/instrumentation-pg@0.76.0 pg >/dev/null 2>&1)
(cd "$W" && PGPORT=$PORT node record.js) > "$OUT/spans.otlp.jsonl"
wc -l "$OUT/spans.otlp.jsonl"
