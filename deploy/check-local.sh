#!/usr/bin/env bash
# Runs the example job files on this machine and checks that sharded-then-
# merged output is byte-identical to a one-machine run:
#   - k8s/sweep-job.yaml: the container's command, for every completion index,
#     with JOB_COMPLETION_INDEX set as Kubernetes sets it (needs python3 + PyYAML);
#   - slurm/sweep.sbatch: the script, for every array task, with the SLURM_*
#     variables Slurm sets;
#   - slurm/tune-stage.sbatch: the tuning stage loop of slurm/tune.sh.
# Usage: deploy/check-local.sh [--quick]   (--quick: 1-minute workloads)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${POOLTUNE:-$root/target/release/pooltune}
[ -x "$bin" ] || { echo "build first: cargo build --release (or set POOLTUNE)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
ln -s "$bin" "$tmp/bin/pooltune"
export PATH="$tmp/bin:$PATH"
extra=""
tune_extra=""
if [ "${1:-}" = "--quick" ]; then
    extra="--set duration=1m"
    tune_extra="--set duration=1m"
fi
same() {  # same DIR1 DIR2 FILE...
    local a=$1 b=$2; shift 2
    for f in "$@"; do
        cmp -s "$a/$f" "$b/$f" || { echo "FAIL: $f differs ($a vs $b)" >&2; exit 1; }
    done
}
sweep_files=(sweep.json sweep.csv sweep.md runs.csv)

echo "== Kubernetes Indexed Job (deploy/k8s/sweep-job.yaml)"
python3 - "$root/deploy/k8s/sweep-job.yaml" "$tmp/k8s" "$extra" > "$tmp/k8s.sh" <<'PY'
import shlex, sys, yaml
job = yaml.safe_load(open(sys.argv[1]))
spec = job["spec"]
assert spec["completionMode"] == "Indexed"
c = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e["value"] for e in c["env"]}
assert int(env["SHARDS"]) == spec["completions"], "SHARDS must equal completions"
env["POOLTUNE_EXTRA_ARGS"] = sys.argv[3]
script = c["args"][0].replace("/results", sys.argv[2])
assert c["command"] == ["/bin/sh", "-c"]
for k in range(spec["completions"]):
    exports = " ".join(f"{n}={shlex.quote(v)}" for n, v in env.items())
    print(f"env {exports} JOB_COMPLETION_INDEX={k} /bin/sh -c {shlex.quote(script)}")
m = yaml.safe_load(open(sys.argv[1].replace("sweep-job", "merge-job")))
mc = m["spec"]["template"]["spec"]["containers"][0]
menv = " ".join(f"{e['name']}={shlex.quote(e['value'])}" for e in mc["env"])
print(f"env {menv} /bin/sh -c {shlex.quote(mc['args'][0].replace('/results', sys.argv[2]))}")
PY
sh "$tmp/k8s.sh" 2>"$tmp/k8s.log" >/dev/null || { cat "$tmp/k8s.log" >&2; exit 1; }
# The same sweep on one machine, from the same arguments.
args=$(python3 -c 'import sys,yaml; c=yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]; print({e["name"]: e["value"] for e in c["env"]}["SWEEP_ARGS"])' "$root/deploy/k8s/sweep-job.yaml")
# shellcheck disable=SC2086
pooltune sim sweep $args $extra --out "$tmp/one" 2>/dev/null >/dev/null
same "$tmp/one" "$tmp/k8s/thresholds" "${sweep_files[@]}"
echo "ok: 4 pods + merge == one machine ($(ls "$tmp/k8s/thresholds" | grep -c shard) shard files)"

echo "== Slurm job array (deploy/slurm/sweep.sbatch + merge.sbatch)"
for k in 0 1 2 3; do
    RESULTS="$tmp/slurm" SLURM_ARRAY_TASK_ID=$((k + 10)) SLURM_ARRAY_TASK_MIN=10 \
        SLURM_ARRAY_TASK_COUNT=4 SLURM_CPUS_PER_TASK=1 POOLTUNE_EXTRA_ARGS="$extra" \
        bash "$root/deploy/slurm/sweep.sbatch" 2>/dev/null
done
RESULTS="$tmp/slurm" bash "$root/deploy/slurm/merge.sbatch" >/dev/null 2>&1
same "$tmp/one" "$tmp/slurm/thresholds" "${sweep_files[@]}"
echo "ok: array of 4 (indices 10-13) + merge == one machine"

echo "== Slurm tuning stages (deploy/slurm/tune-stage.sbatch, as deploy/slurm/tune.sh runs it)"
stages=0
while [ ! -f "$tmp/tune/default-seed/tune.json" ]; do
    for k in 0 1 2; do
        RESULTS="$tmp/tune" SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_COUNT=3 \
            POOLTUNE_EXTRA_ARGS="$tune_extra" bash "$root/deploy/slurm/tune-stage.sbatch" 2>/dev/null
    done
    pooltune merge "$tmp/tune/default-seed" >/dev/null 2>&1
    stages=$((stages + 1))
done
targs=$(sed -n '/^TUNE_ARGS=(/,/^)/p' "$root/deploy/slurm/tune-stage.sbatch" | sed '1d;$d' | tr '\n' ' ')
# shellcheck disable=SC2086
pooltune tune $targs $tune_extra --out "$tmp/tune-one" >/dev/null 2>&1
same "$tmp/tune-one" "$tmp/tune/default-seed" tune.json tuned.toml tune.md
echo "ok: $stages stages x 3 shards + merges == one machine"
