#!/usr/bin/env bash
# Task 1: trains every variant on the embedded synthetic dataset, ONE AT A TIME, then writes the
# table (python -m minijax.projects.task1.report; minijax/projects/task1/README.md shows it). A
# variant whose workdir already has a report is skipped, so the script resumes. ~4 min per variant
# on a 2-core CPU (22 runs: ~1.5 h).
#
#   RUNS=/work/task1_runs scripts/task1_runs.sh            # all variants + ablations + table
#   ONLY_TABLE=1 scripts/task1_runs.sh                     # the table of finished workdirs
#
# Overrides on top of each config's ':demo': 15 epochs (6 leave the subset-trained models still
# climbing) and 100 test images per class (1000 instead of 200: +-1.5 points instead of +-3.5).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/task1_runs}
PY=${PY:-python}
COMMON=(--config.num_epochs=15 --config.data.synthetic.test_per_class=100
        --config.progress_bar=false)

VARIANTS=(
  "naive_seed            configs/task1_naive.py:demo"
  "naive_seed_subsets    configs/task1_naive.py:demo,subsets"
  "naive_zero            configs/task1_naive.py:demo,fill=zero"
  "naive_zero_subsets    configs/task1_naive.py:demo,subsets,fill=zero"
  "adapter               configs/task1_adapter.py:demo"
  "adapter_subsets       configs/task1_adapter.py:demo,subsets"
  "dynamic               configs/task1_dynamic.py:demo"
  "dynamic_subsets       configs/task1_dynamic.py:demo,subsets"
  # Ablations of the dynamic stem (default K=4, D=8, attention on, size-uniform sampling).
  "dynamic_subsets_noattn configs/task1_dynamic.py:demo,subsets,attn=0"
  "dynamic_subsets_k8    configs/task1_dynamic.py:demo,subsets,k=8"
  "dynamic_d32           configs/task1_dynamic.py:demo,d=32"
  "dynamic_subsets_d32   configs/task1_dynamic.py:demo,subsets,d=32"
  "dynamic_subsets_d32_noattn configs/task1_dynamic.py:demo,subsets,d=32,attn=0"
  "dynamic_subsets_d32_full05 configs/task1_dynamic.py:demo,subsets,d=32,full=0.5"
  # Seed replicates of the subset-trained variants (the table adds their mean and range).
  "dynamic_subsets_seed1 configs/task1_dynamic.py:demo,subsets --config.seed=1"
  "dynamic_subsets_seed2 configs/task1_dynamic.py:demo,subsets --config.seed=2"
  "dynamic_subsets_d32_seed1 configs/task1_dynamic.py:demo,subsets,d=32 --config.seed=1"
  "dynamic_subsets_d32_seed2 configs/task1_dynamic.py:demo,subsets,d=32 --config.seed=2"
  "naive_seed_subsets_seed1 configs/task1_naive.py:demo,subsets --config.seed=1"
  "naive_seed_subsets_seed2 configs/task1_naive.py:demo,subsets --config.seed=2"
  "adapter_subsets_seed1 configs/task1_adapter.py:demo,subsets --config.seed=1"
  "adapter_subsets_seed2 configs/task1_adapter.py:demo,subsets --config.seed=2"
)

workdirs=()
for entry in "${VARIANTS[@]}"; do
  read -r name config extra <<<"$entry"
  workdir="$RUNS/$name"
  workdirs+=("$workdir")
  if [[ -n "${ONLY_TABLE:-}" || -f "$workdir/report/results.json" ]]; then
    continue
  fi
  echo "=== $name: $config"
  start=$SECONDS
  # shellcheck disable=SC2086  # $extra: zero or more --config.KEY=VALUE overrides.
  "$PY" -m minijax.main --config="$config" --workdir="$workdir" "${COMMON[@]}" ${extra:-}
  echo "=== $name: $((SECONDS - start)) s"
done

existing=()
for workdir in "${workdirs[@]}"; do
  [[ -f "$workdir/report/results.json" ]] && existing+=("$workdir")
done
"$PY" -m minijax.projects.task1.report --workdirs="$(IFS=,; echo "${existing[*]}")" \
    --out="$RUNS/report"
