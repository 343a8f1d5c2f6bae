#!/usr/bin/env bash
# Task 1 on the held-out multi-band sets (minijax.data.multiband: one_band, two_band,
# texture_contrast; none was used to choose the recipe): per set, the recommended adaptive recipe
# (`subsets,per_example,fusion=late,pool=learned`) against specialists trained with the same
# epochs and batch on the full set and on each subset the set declares informative
# (multiband.INFORMATIVE), and a model trained within each subset declared to carry no class
# information (multiband.CHANCE, e.g. R+G+B: the best RGB-only reference; a naive model trained
# there, evaluated on every subset). Then per set the
# equal-budget table ($RUNS/report_KIND/task1_equal_budget.md; cost: 1 training vs 2^C - 1).
#
#   RUNS=/work/task1_runs/heldout JOBS=2 scripts/task1_heldout.sh
#   DRY_RUN=1 RUNS=... scripts/task1_heldout.sh      # list the runs, train nothing
#   ONLY_TABLE=1 RUNS=... scripts/task1_heldout.sh   # the tables of finished workdirs
#   KINDS="one_band" SEEDS="0 1 2" EPOCHS=24 ...     # defaults: all kinds, seed 0, the preset's 8
#   VARIANTS="fullview|fullview e16||--config.num_epochs=16" ...
#       more adaptive rows per kind and seed, after its specialists: NAME|ARGS|OVERRIDES, ARGS
#       appended to the recipe's config args, the workdir KIND_dynamic_NAME_sSEED (issue 29's
#       stage 2)
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS=${RUNS:-/work/task1_runs/heldout}
# The :multiband=KIND preset: its own image size, batch 32, 8 epochs. An EMA of the weights (over
# ~100 steps) is what is validated and tested, as on the multispectral set.
COMMON=(--config.progress_bar=false --config.ema_decay="${EMA:-0.99}")
[[ -n ${EPOCHS:-} ]] && COMMON+=(--config.num_epochs="$EPOCHS")
source scripts/task1_common.sh

KINDS=${KINDS:-one_band two_band texture_contrast}
SEEDS=${SEEDS:-0}
RECIPE=subsets,per_example,fusion=late,pool=learned
declared() {  # declared KIND informative|chance: the subsets, space-separated.
  "$PY" -c "import sys; from minijax.data import multiband
print(' '.join(multiband.declared_subsets(sys.argv[1])[sys.argv[2]]))" "$1" "$2"
}

entries=()
for kind in $KINDS; do
  for seed in $SEEDS; do
    entries+=("${kind}_dynamic_s$seed configs/task1_dynamic.py:multiband=$kind,$RECIPE \
--config.seed=$seed")
    for subset in $(declared "$kind" informative); do
      entries+=("${kind}_spec_${subset//+/_}_s$seed \
configs/task1_naive.py:multiband=$kind,specialist=$subset --config.seed=$seed")
    done
    for subset in $(declared "$kind" chance); do  # Evaluated on every subset, as the adaptive.
      entries+=("${kind}_within_${subset//+/_}_s$seed \
configs/task1_naive.py:multiband=$kind,train=$subset --config.seed=$seed")
    done
    for variant in ${VARIANTS:-}; do
      IFS='|' read -r vname vargs voverrides <<<"$variant"
      entries+=("${kind}_dynamic_${vname}_s$seed \
configs/task1_dynamic.py:multiband=$kind,$RECIPE${vargs:+,$vargs} --config.seed=$seed \
${voverrides:-}")
    done
  done
done
train_all "${entries[@]}"
[[ -n ${DRY_RUN:-} ]] && exit 0

for kind in $KINDS; do
  rows=() specialists=()
  for seed in $SEEDS; do
    rows+=("${kind}_dynamic_s$seed")
    for variant in ${VARIANTS:-}; do rows+=("${kind}_dynamic_${variant%%|*}_s$seed"); done
    for subset in $(declared "$kind" informative); do
      specialists+=("${kind}_spec_${subset//+/_}_s$seed")
    done
    for subset in $(declared "$kind" chance); do  # Rows: the best model within that subset.
      rows+=("${kind}_within_${subset//+/_}_s$seed")
    done
  done
  workdirs=$(finished "${rows[@]}")
  [[ $workdirs == *_dynamic_s* ]] || { echo "$kind: no finished adaptive run" >&2; continue; }
  "$PY" -m minijax.projects.task1.report --workdirs="$workdirs" \
      --specialists="$(finished "${specialists[@]}")" --out="$RUNS/report_$kind" --nobench \
      --stem_cost_sizes=
done
report_failures
