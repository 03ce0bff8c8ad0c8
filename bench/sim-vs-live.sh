#!/usr/bin/env bash
# The sim-vs-live accuracy experiment (README, "Sim vs live"), end to end on a
# throwaway local PostgreSQL:
#   1. start a cluster (initdb + pg_ctl; as root it runs as `pooltune-test`),
#   2. `pooltune live calibrate` it (connect latency, round trips, USL),
#      writing the experiment's workload with the calibrated [database],
#   3. `pooltune sim run` that workload (the prediction),
#   4. `pooltune live run` the same workload and seed (the measurement),
#   5. `pooltune compare` them.
# Usage: bash bench/sim-vs-live.sh [SEED] [OUT_DIR]   (about 90 s)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-7}
OUT=${2:-reports/sim-vs-live-$SEED}
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pooltune

if command -v initdb >/dev/null 2>&1; then
    PGBIN=$(dirname "$(command -v initdb)")
else
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/pooltune-exp-XXXXXX)
RUN=()
if [ "$(id -u)" = 0 ]; then
    id -u pooltune-test >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pooltune-test
    chown pooltune-test "$TMP"
    RUN=(runuser -u pooltune-test --)
fi
cleanup() {
    "${RUN[@]}" "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PW="exp-$RANDOM-$RANDOM"
echo "$PW" >"$TMP/pw"
[ ${#RUN[@]} -eq 0 ] || chown pooltune-test "$TMP/pw"
"${RUN[@]}" "$PGBIN/initdb" -D "$TMP/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$TMP/pw" --no-sync -E UTF8 --locale=C >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${RUN[@]}" "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c fsync=off" start >/dev/null
export PGPASSWORD=$PW
URL="postgres://postgres@127.0.0.1:$PORT/postgres"

mkdir -p "$OUT"
echo "== calibrate"
"$BIN" live calibrate --database-url "$URL" --trace bench/live/sim-vs-live.toml \
    --concurrency 1,2,4,8 --level-seconds 2 --out "$OUT/calibration"
echo "== sim run (prediction)"
"$BIN" sim run --trace "$OUT/calibration/workload.toml" --policy bench/live/fixed-4.toml \
    --seed "$SEED" --out "$OUT/sim"
echo "== live run (measurement, about 60 s)"
"$BIN" live run --database-url "$URL" --trace "$OUT/calibration/workload.toml" \
    --policy bench/live/fixed-4.toml --seed "$SEED" --out "$OUT/live"
echo "== compare (A = sim, B = live)"
"$BIN" compare "$OUT/sim" "$OUT/live" --out "$OUT/compare.json"
