#!/usr/bin/env bash
# Connection overhead measured live (issue 5: the seed document claimed pooling
# cuts connection overhead by 80 % without measuring it): the same trace against
# a throwaway local PostgreSQL (TCP + SCRAM) with no pool (a new connection per
# request), the seed policy and a fixed pool of 10; connect time spent per
# request and response times from each run's summary.json.
# Usage: bash bench/connection-overhead.sh [SEED] [OUT_DIR]   (about 2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-7}
OUT=${2:-reports/connection-overhead-$SEED}
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pooltune

. bench/pg-cluster.sh

mkdir -p "$OUT"
for P in no-pool seed-80-30 fixed-10; do
    echo "== live run: $P (about 30 s)"
    "$BIN" live run --database-url "$URL" --trace bench/live/overhead.toml --policy "$P" \
        --seed "$SEED" --out "$OUT/$P" >/dev/null
done
echo "== connect time per request and response time, live (one connection per request vs pooled)"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for p in ["no-pool", "seed-80-30", "fixed-10"]:
    r = json.load(open(f"{out}/{p}/summary.json"))["runs"][0]
    pool, resp = r["pool"], r["response_ms"]
    per_req = 1000.0 * pool["connect_time_s"] / max(1, r["requests"]["completed"])
    rows.append((p, pool["connections_opened"], per_req, resp["mean"], resp["p50"], resp["p99"]))
print(f"{'policy':<12} {'opened':>7} {'connect ms/req':>15} {'resp mean':>10} {'p50':>8} {'p99':>8}")
for p, n, c, m, p50, p99 in rows:
    print(f"{p:<12} {n:>7} {c:>15.4f} {m:>10.2f} {p50:>8.2f} {p99:>8.2f}")
base = rows[0][2]
for p, _, c, *_ in rows[1:]:
    print(f"{p}: connect time per request {100 * (1 - c / base):.2f} % below no-pool")
PY
