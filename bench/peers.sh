#!/usr/bin/env bash
# Side-by-side speed of pooltune's full engine, the bare Rust M/M/c loop (the
# speed floor) and SimPy on the same M/M/c model (c = 25, a = 20, 10 ms mean
# service), in one run on this machine; then peak memory for 10x more requests.
#
#   bash bench/peers.sh [REQUESTS] [SEEDS]      (defaults: 5000000 3)
#
# Needs ../shared/peers (the floor's source and the SimPy script), rustc,
# python3 with simpy (pip install simpy) and /usr/bin/time. Absolute rates vary
# 10-25 % between runs, which is why the three run back to back here.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000000}
SEEDS=${2:-3}
PEERS=${PEERS:-../shared/peers}
OUT=target/peers
mkdir -p "$OUT"
cargo build --release --quiet --example mmc_bench
rustc -O "$PEERS/rust_mmc_floor.rs" -o "$OUT/rust_mmc_floor"
rate() { python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); print("%.2f" % (d["customers_per_s"] / 1e6))'; }
printf '%-6s %14s %14s %14s\n' seed "pooltune M/s" "floor M/s" "simpy M/s"
for seed in $(seq 1 "$SEEDS"); do
  p=$(./target/release/examples/mmc_bench --c 25 --a 20 --mean-service 0.010 --customers "$N" --seed "$seed" | rate)
  f=$("$OUT/rust_mmc_floor" --c 25 --a 20 --mean-service 0.010 --customers "$N" --seed "$seed" | rate)
  if python3 -c 'import simpy' 2>/dev/null; then
    # SimPy is ~100x slower: a tenth of the requests keeps this under a minute.
    s=$(python3 "$PEERS/simpy_mmc.py" --c 25 --a 20 --mean-service 0.010 --customers $((N / 10)) --seed "$seed" | rate)
  else
    s="(no simpy)"
  fi
  printf '%-6s %14s %14s %14s\n' "$seed" "$p" "$f" "$s"
done
echo
echo "peak RSS (constant memory in trace length):"
for n in "$N" $((N * 10)); do
  rss=$(/usr/bin/time -f '%M' ./target/release/examples/mmc_bench --customers "$n" 2>&1 >/dev/null | tail -1)
  printf '  %12s requests: %8s KiB\n' "$n" "$rss"
done
