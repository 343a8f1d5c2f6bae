#!/usr/bin/env bash
# Task 1 on the embedded multispectral set (R, G, B, NIR, SWIR; the material is only in NIR and
# SWIR): one channel-adaptive model (the dynamic stem trained on subsets of all five bands)
# against the best RGB-only models and against a specialist per subset (the same ComplexCNN, its
# first conv built for that subset, trained and evaluated on it alone). Then the tables:
# $RUNS/report (all 31 subsets per variant, stem cost) with the specialist comparison, and
# $RUNS/report_long (the 60- and 120-epoch models against 60-epoch specialists of all 31 subsets).
#
#   RUNS=/work/task1_runs/multispectral JOBS=2 scripts/task1_multispectral.sh
#   ONLY_TABLE=1 RUNS=... scripts/task1_multispectral.sh     # the tables of finished workdirs
#   SEEDS=0 SPECIALIST_SEEDS=0 LONG_SEEDS=0 LONGER_SEEDS=0 LATE_SEEDS=0 POOL_SEEDS=0
#   LONG_SPECIALIST_SEEDS=0 OTHER_SPECIALIST_SEEDS=0   one seed of each (default 0 1 2;
#     LATE60_SEEDS 0 1, UNIFORM_SEEDS 0, COSINE_SEEDS 0); LATE_SEEDS="0 1 2 3 4"
#     POOL_SEEDS="0 1 2 3 4" adds the two seeds of README's noise check.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS=${RUNS:-/work/task1_runs/multispectral}
# 100 test images per class (1,200): every subset of the adaptive models is scored on them.
# 16 px (the :multispectral config has 32) keeps the runs CPU-sized: IMAGE_SIZE=32 for the config's.
# An EMA of the weights (over ~100 steps) is what is validated and tested.
COMMON=(--config.data.multispectral.test_per_class=100 --config.progress_bar=false
        --config.data.image_size="${IMAGE_SIZE:-16}" --config.ema_decay="${EMA:-0.99}")
source scripts/task1_common.sh

SEEDS=${SEEDS:-0 1 2}
SPECIALIST_SEEDS=${SPECIALIST_SEEDS:-0 1 2}
SPECIALISTS=${SPECIALISTS:-"R+G+B+NIR+SWIR NIR+SWIR NIR SWIR R G B R+NIR G+B+SWIR"}
DYN=configs/task1_dynamic.py:multispectral
NAIVE=configs/task1_naive.py:multispectral
entries=()
for seed in $SEEDS; do  # The adaptive model: the specialists' budget (10 epochs), and 3x that.
  entries+=("dynamic_subsets_ema_s$seed $DYN,subsets --config.seed=$seed")
done
for seed in $SPECIALIST_SEEDS; do
  for subset in $SPECIALISTS; do
    entries+=("spec_${subset//+/_}_s$seed $NAIVE,specialist=$subset --config.seed=$seed")
  done
done
for seed in $SEEDS; do
  entries+=("dynamic_subsets_e30_s$seed $DYN,subsets --config.num_epochs=30 --config.seed=$seed")
done
for seed in ${LONG_SEEDS:-0 1 2}; do  # 6x the specialists' budget: does the gap keep closing?
  entries+=("dynamic_subsets_e60_s$seed $DYN,subsets --config.num_epochs=60 --config.seed=$seed")
done
for seed in ${LONG_SEEDS:-0 1 2}; do  # The same with a subset drawn per example, not per batch.
  pe="$DYN,subsets,per_example --config.num_epochs=60 --config.seed=$seed"
  entries+=("dynamic_subsets_pe_e60_s$seed $pe")
done
for seed in ${LONGER_SEEDS:-0 1 2}; do  # And twice as long: is the gap still closing?
  pe="$DYN,subsets,per_example --config.num_epochs=120 --config.seed=$seed"
  entries+=("dynamic_subsets_pe_e120_s$seed $pe")
done
LATE="$DYN,subsets,per_example,fusion=late"  # Per example, each channel through its own ReLU.
for seed in ${LATE60_SEEDS:-0 1}; do
  entries+=("dynamic_late_pe_e60_s$seed $LATE --config.seed=$seed --config.num_epochs=60")
done
for seed in ${UNIFORM_SEEDS:-0}; do  # ... and every subset equally likely (not size first).
  uniform="$LATE,sampling=uniform --config.seed=$seed --config.num_epochs=60"
  entries+=("dynamic_late_uniform_pe_e60_s$seed $uniform")
done
for seed in ${LATE_SEEDS:-0 1 2}; do
  entries+=("dynamic_late_pe_e120_s$seed $LATE --config.seed=$seed --config.num_epochs=120")
done
for seed in ${POOL_SEEDS:-0 1 2}; do  # ... with the channels weighted by a learned softmax.
  pool="$LATE,pool=learned --config.seed=$seed --config.num_epochs=120"
  entries+=("dynamic_late_pool_pe_e120_s$seed $pool")
done
COSINE="--config.optimizer.schedule=warmup_cosine --config.optimizer.warmup_epochs=1"
for seed in ${COSINE_SEEDS:-0}; do  # The same with the rate decayed to 0 (a probe: one seed).
  cosine="$LATE --config.seed=$seed $COSINE --config.num_epochs=120"
  entries+=("dynamic_late_cos_pe_e120_s$seed $cosine")
done
# Specialists with that budget too (their own table: the report averages specialists by subset).
LONG="--config.num_epochs=60"
LONG_SPECIALISTS=${LONG_SPECIALISTS:-NIR+SWIR NIR SWIR R+NIR G+B+SWIR R+G+B+NIR+SWIR}
for seed in ${LONG_SPECIALIST_SEEDS:-0 1 2}; do
  for subset in $LONG_SPECIALISTS; do
    entries+=("spec60_${subset//+/_}_s$seed $NAIVE,specialist=$subset $LONG --config.seed=$seed")
  done
done
# And for each of the other 25 subsets: a specialist for every evaluated subset.
ALL_SUBSETS=$("$PY" -c "from minijax import channels
print(' '.join(channels.all_subsets(channels.parse_names('R,G,B,NIR,SWIR'))))")
for seed in ${OTHER_SPECIALIST_SEEDS:-0 1 2}; do
  for subset in $ALL_SUBSETS; do
    [[ " $LONG_SPECIALISTS " == *" $subset "* ]] && continue
    entries+=("spec60_${subset//+/_}_s$seed $NAIVE,specialist=$subset $LONG --config.seed=$seed")
  done
done
# The best RGB-only models: a naive RGB model (the seed's recipe, no EMA; it is also the R+G+B
# specialist) and the dynamic stem trained on subsets of R, G, B only. Plus the first adaptive
# run, without EMA.
entries+=("naive_rgb_s0 $NAIVE,train=R+G+B --config.ema_decay=0 --config.seed=0"
          "dynamic_subsets_s0 $DYN,subsets --config.ema_decay=0 --config.seed=0"
          "dynamic_rgb_subsets_s0 $DYN,subsets,train=R+G+B --config.seed=0")
train_all "${entries[@]}"

declare -A LABELS=(
  [dynamic_subsets_ema]="dynamic + subsets (10 epochs)"
  [dynamic_subsets_e30]="dynamic + subsets (30 epochs)"
  [dynamic_subsets_e60]="dynamic + subsets (60 epochs)"
  [dynamic_subsets_pe_e60]="dynamic + subsets per example (60 epochs)"
  [dynamic_subsets_pe_e120]="dynamic + subsets per example (120 epochs)"
  [dynamic_late_pe_e60]="dynamic late fusion + subsets per example (60 epochs)"
  [dynamic_late_uniform_pe_e60]="dynamic late fusion + uniform subsets per example (60 epochs)"
  [dynamic_late_pe_e120]="dynamic late fusion + subsets per example (120 epochs)"
  [dynamic_late_pool_pe_e120]="dynamic late fusion + learned pooling + subsets per example \
(120 epochs)"
  [dynamic_late_cos_pe_e120]="dynamic late fusion + subsets per example (120 epochs; cosine)"
  [dynamic_subsets]="dynamic + subsets (10 epochs; no EMA)"
  [naive_rgb]="naive on R+G+B (10 epochs; no EMA)"
  [dynamic_rgb_subsets]="dynamic + subsets of R+G+B (10 epochs)")  # No commas: --labels is a list.
ADAPTIVE_LABELS=("${LABELS[dynamic_subsets_ema]}" "${LABELS[dynamic_subsets_e30]}"
                 "${LABELS[dynamic_subsets_e60]}" "${LABELS[dynamic_subsets_pe_e60]}"
                 "${LABELS[dynamic_subsets_pe_e120]}" "${LABELS[dynamic_late_pe_e60]}"
                 "${LABELS[dynamic_late_uniform_pe_e60]}" "${LABELS[dynamic_late_pe_e120]}"
                 "${LABELS[dynamic_late_pool_pe_e120]}" "${LABELS[dynamic_late_cos_pe_e120]}")
names=() labels=() spec_names=()
for entry in "${entries[@]}"; do
  read -r name _ <<<"$entry"
  if [[ $name == spec_* ]]; then spec_names+=("$name"); continue; fi
  [[ $name == spec60_* ]] && continue  # Their own table, below.
  [[ -f "$RUNS/$name/report/results.json" ]] || continue
  names+=("$name")
  seed=${name##*_s} label=${LABELS[${name%_s*}]}
  (( seed > 0 )) && label="$label [seed $seed]"  # The table's seed groups.
  labels+=("$label")
done
workdirs=$(finished "${names[@]}")
specialists=$(finished "${spec_names[@]}")
# The R+G+B specialist is the naive RGB model (same backbone, trained and evaluated on R+G+B).
specialists="$specialists,$(finished naive_rgb_s0)"
"$PY" -m minijax.projects.task1.report --workdirs="$workdirs" --specialists="${specialists#,}" \
    --labels="$(IFS=,; echo "${labels[*]}")" --out="$RUNS/report" --bench_repeats=2 \
    --adaptive="$(IFS=,; echo "${ADAPTIVE_LABELS[*]}")" \
    --bench_subsets=R+G+B+NIR+SWIR,R+G+B,NIR+SWIR,NIR
# The 60- and 120-epoch adaptive runs against specialists trained 60 epochs.
long=$(finished "${names[@]}" | tr , '\n' | grep -E '_e(60|120)_' | paste -sd, -)
long_names=()
for entry in "${entries[@]}"; do
  read -r name _ <<<"$entry"
  [[ $name == spec60_* ]] && long_names+=("$name")
done
long_specialists=$(finished "${long_names[@]}")
if [[ -n $long && -n $long_specialists ]]; then
  "$PY" -m minijax.projects.task1.report --workdirs="$long" --specialists="$long_specialists" \
      --labels="$(for w in ${long//,/ }; do n=${w##*/}; s=${n##*_s}; l=${LABELS[${n%_s*}]}
                 (( s > 0 )) && l="$l [seed $s]"; echo "$l"; done | paste -sd, -)" \
      --out="$RUNS/report_long" --nobench --stem_cost_sizes=
fi
report_failures
