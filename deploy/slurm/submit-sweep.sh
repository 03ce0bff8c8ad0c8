#!/bin/sh
# Submits the sweep array and its merge, which runs once every shard succeeded.
#   RESULTS=/shared/pooltune deploy/slurm/submit-sweep.sh
set -eu
here=$(dirname "$0")
array=$(sbatch --parsable --export=ALL "$here/sweep.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --export=ALL --dependency="afterok:$array" "$here/merge.sbatch")
echo "sweep array job $array; merge job $merge (runs after the array succeeds)"
