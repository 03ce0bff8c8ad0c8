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

. bench/pg-cluster.sh

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
