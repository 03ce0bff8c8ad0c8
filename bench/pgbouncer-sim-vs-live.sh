#!/usr/bin/env bash
# PgBouncer sim vs live (issue 8, item 5), end to end on a throwaway local
# PostgreSQL with a real PgBouncer in front (transaction mode, 4 server
# connections; the application keeps 16 client connections):
#   1. start the cluster and PgBouncer,
#   2. `pooltune live calibrate` the server directly (connect latency, round
#      trips, USL) with the sim-vs-live workload,
#   3. write a scenario: that workload, one service with bench/live/fixed-16.toml,
#      a PgBouncer layer (transaction, pool 4) and the calibrated server,
#   4. `pooltune sim run --scenario` it (the prediction),
#   5. `pooltune live run` the same workload and seed through PgBouncer,
#   6. `pooltune compare` them.
# Usage: bash bench/pgbouncer-sim-vs-live.sh [SEED] [OUT_DIR]   (about 90 s)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-7}
OUT=${2:-reports/pgbouncer-sim-vs-live-$SEED}
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pooltune
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || { echo "no pgbouncer (apt-get install pgbouncer)" >&2; exit 1; }

. bench/pg-cluster.sh

# PgBouncer: plain-text auth file (it answers SCRAM and logs in with it).
BPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$TMP/bouncer"
printf '"postgres" "%s"\n' "$PW" >"$TMP/bouncer/userlist.txt"
cat >"$TMP/bouncer/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $TMP/bouncer/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 100
ignore_startup_parameters = extra_float_digits
logfile = $TMP/bouncer/pgbouncer.log
pidfile = $TMP/bouncer/pgbouncer.pid
INI
[ ${#RUN[@]} -eq 0 ] || chown -R pooltune-test "$TMP/bouncer"
"${RUN[@]}" "$PGBOUNCER" -d "$TMP/bouncer/pgbouncer.ini"
stop_bouncer() {
    [ -f "$TMP/bouncer/pgbouncer.pid" ] && kill "$(cat "$TMP/bouncer/pgbouncer.pid")" 2>/dev/null || true
    cleanup
}
trap stop_bouncer EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && break; sleep 0.1; done
BURL="postgres://postgres@127.0.0.1:$BPORT/postgres"

mkdir -p "$OUT"
echo "== calibrate (the server, directly)"
"$BIN" live calibrate --database-url "$URL" --trace bench/live/sim-vs-live.toml \
    --concurrency 1,2,4,8 --level-seconds 2 --out "$OUT/calibration"
echo "== scenario"
python3 - "$OUT/calibration/workload.toml" "$OUT/scenario.toml" "$PWD/bench/live/fixed-16.toml" <<'PY'
import sys, tomllib, json, os
w = tomllib.load(open(sys.argv[1], "rb"))
db = w.get("database", {})
# The scenario's workload describes requests only: a copy without [database].
requests = os.path.join(os.path.dirname(os.path.abspath(sys.argv[2])), "requests.toml")
keep, out = True, []
for line in open(sys.argv[1]):
    if line.lstrip().startswith("["):
        keep = not line.strip().lstrip("[").startswith("database")
    if keep:
        out.append(line)
open(requests, "w").write("".join(out))
def val(v):
    return json.dumps(v) if isinstance(v, str) else repr(v).lower() if isinstance(v, bool) else repr(v)
server = "\n".join(f"{k} = {val(v)}" for k, v in db.items() if not isinstance(v, dict))
tables = "\n".join(
    f"[servers.{k}]\n" + "\n".join(f"{kk} = {val(vv)}" for kk, vv in v.items())
    for k, v in db.items() if isinstance(v, dict))
open(sys.argv[2], "w").write(f'''# Written by bench/pgbouncer-sim-vs-live.sh: the calibrated server behind
# PgBouncer (transaction mode, pool 4), one application with 16 client connections.
name = "pgbouncer-sim-vs-live"
description = "sim vs live through PgBouncer: transaction mode, pool 4, 16 client connections"

[workload]
trace = "{requests}"

[[services]]
name = "app"
instances = 1
policy = "{sys.argv[3]}"
share = 1.0

[bouncer]
mode = "transaction"
policy = "pgbouncer-txn"
default_pool_size = 4
max_client_conn = 100
client_connect_latency = "0.3ms"
hop_overhead = "0.05ms"

[[servers]]
name = "primary"
role = "primary"
{server}
{tables}
''')
PY
echo "== sim run --scenario (prediction)"
"$BIN" sim run --scenario "$OUT/scenario.toml" --seed "$SEED" --out "$OUT/sim"
echo "== live run through PgBouncer (measurement, about 60 s)"
"$BIN" live run --database-url "$BURL" --trace "$OUT/calibration/workload.toml" \
    --policy bench/live/fixed-16.toml --no-prepare --seed "$SEED" --out "$OUT/live"
echo "== compare (A = sim, B = live)"
"$BIN" compare "$OUT/sim" "$OUT/live" --out "$OUT/compare.json"
