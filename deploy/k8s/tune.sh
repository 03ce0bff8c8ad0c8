#!/bin/sh
# Runs a sharded `pooltune tune` on Kubernetes: for each stage of the search,
# an Indexed Job (tune-stage-job.yaml) runs the stage's shards, then a one-pod
# Job (tune-merge-job.yaml) merges them into tune-state.json. When a merge
# reports the search complete, tune.json, tuned.toml and tune.md are in
# /results/$TUNE_NAME on the shared volume: the same bytes one machine writes.
#
#   kubectl apply -f deploy/k8s/pvc.yaml
#   deploy/k8s/tune.sh
set -eu
here=$(dirname "$0")

# Waits until job $1 has completed; fails if it failed.
wait_job() {
    while :; do
        state=$(kubectl get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')
        case "$state" in
            *Complete*) return 0 ;;
            *Failed*)
                echo "job $1 failed" >&2
                kubectl logs "job/$1" >&2 || true
                return 1
                ;;
        esac
        sleep 5
    done
}

stage=0
while :; do
    sed "s/name: pooltune-tune-stage$/name: pooltune-tune-stage-$stage/" \
        "$here/tune-stage-job.yaml" | kubectl apply -f -
    wait_job "pooltune-tune-stage-$stage"
    sed "s/name: pooltune-tune-merge$/name: pooltune-tune-merge-$stage/" \
        "$here/tune-merge-job.yaml" | kubectl apply -f -
    wait_job "pooltune-tune-merge-$stage"
    log=$(kubectl logs "job/pooltune-tune-merge-$stage")
    echo "$log" | head -n 3 >&2
    if echo "$log" | grep -q "the search is complete"; then
        echo "$log"
        exit 0
    fi
    stage=$((stage + 1))
done
