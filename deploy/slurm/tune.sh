#!/bin/sh
# Runs a sharded `pooltune tune` on Slurm: one job array per stage of the
# search (sbatch --wait), then a merge into tune-state.json, until the merge
# writes tune.json, tuned.toml and tune.md into $RESULTS/$TUNE_NAME. Run it on
# a login node (the merges are light), e.g. inside tmux or nohup:
#   RESULTS=/shared/pooltune deploy/slurm/tune.sh
set -eu
here=$(dirname "$0")
: "${RESULTS:=$PWD/results}"
: "${TUNE_NAME:=default-seed}"
export RESULTS TUNE_NAME
dir="$RESULTS/$TUNE_NAME"
while [ ! -f "$dir/tune.json" ]; do
    sbatch --wait --export=ALL "$here/tune-stage.sbatch" >/dev/null
    pooltune merge "$dir" >/dev/null
done
cat "$dir/tune.md"
