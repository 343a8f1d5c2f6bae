#!/bin/bash
# Submits launch/slurm.sbatch for NODES nodes x GPUS_PER_NODE GPUs (one task per GPU).
#
#   launch/slurm.sh NODES GPUS_PER_NODE [SBATCH_OPTIONS...] -- MINIJAX_MAIN_ARGS...
#   launch/slurm.sh 2 8 --partition=gpu --time=02:00:00 -- \
#       --config=configs/resnet34.py --workdir=/shared/workdirs/resnet34 \
#       --config.data.root=/shared/imagenet-mini --config.batch_size=256
#
# --config.batch_size is global (all GPUs together): it must be divisible by NODES*GPUS_PER_NODE.
set -euo pipefail

usage() {
  echo "usage: $0 NODES GPUS_PER_NODE [SBATCH_OPTIONS...] -- MINIJAX_MAIN_ARGS..." >&2
  exit 2
}
[[ $# -ge 3 ]] || usage
nodes=$1 gpus=$2
shift 2
[[ $nodes =~ ^[1-9][0-9]*$ && $gpus =~ ^[1-9][0-9]*$ ]] || usage
sbatch_options=()
while [[ $# -gt 0 && $1 != "--" ]]; do
  sbatch_options+=("$1")
  shift
done
[[ $# -gt 1 ]] || usage
shift  # the "--"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec sbatch --nodes="$nodes" --ntasks-per-node="$gpus" --gres="gpu:$gpus" \
  "${sbatch_options[@]}" "$here/slurm.sbatch" "$@"
