#!/usr/bin/env bash
# Task 1, RGB embedded set: the dynamic stem's training recipe against the worst-subset drop.
# Candidates are trained at seed 0 and compared on a grown validation split (1,000 images, never
# the test split); the chosen one and the baseline get seeds 0-2, reported on test. A workdir with
# a report is skipped, so the script resumes. JOBS trainings at once (scripts/task1_common.sh).
#
#   RUNS=/work/task1_runs/rgb JOBS=2 scripts/task1_rgb_recipes.sh          # train + both tables
#   ONLY_TABLE=1 RUNS=/work/task1_runs/rgb scripts/task1_rgb_recipes.sh   # tables only
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS=${RUNS:-/work/task1_runs/rgb}
COMMON=(--config.num_epochs=15 --config.data.synthetic.test_per_class=100
        --config.progress_bar=false)
source scripts/task1_common.sh
DYN=configs/task1_dynamic.py:demo,subsets
COSINE="--config.optimizer.schedule=warmup_cosine --config.optimizer.warmup_epochs=1"
EMA="--config.ema_decay=0.99"  # An average over the last ~100 steps (~3 epochs).

# name | config | overrides (on top of COMMON); _sN names the seed.
VARIANTS=(
  "base_s0      $DYN --config.seed=0"
  "cosine_s0    $DYN $COSINE --config.seed=0"
  "ema_s0       $DYN $EMA --config.seed=0"
  "base_s1      $DYN --config.seed=1"
  "base_s2      $DYN --config.seed=2"
  "ema_s1       $DYN $EMA --config.seed=1"
  "ema_s2       $DYN $EMA --config.seed=2"
  # A larger share of small subsets (full set 0.2, sizes 1 and 2 0.4 each; default 1/3 each).
  "ema_full02_s0 $DYN,full=0.2 $EMA --config.seed=0"
  # Both, and 25 epochs (the models are still climbing at 15).
  "emalong_s0   $DYN,full=0.2 $EMA --config.num_epochs=25 --config.seed=0"
  "emalong_s1   $DYN,full=0.2 $EMA --config.num_epochs=25 --config.seed=1"
  "emalong_s2   $DYN,full=0.2 $EMA --config.num_epochs=25 --config.seed=2"
  # The chosen recipe with late fusion (each channel's own ReLU; the multispectral set's choice).
  "emalong_late_s0 $DYN,full=0.2,fusion=late $EMA --config.num_epochs=25 --config.seed=0"
  "emalong_late_s1 $DYN,full=0.2,fusion=late $EMA --config.num_epochs=25 --config.seed=1"
  "emalong_late_s2 $DYN,full=0.2,fusion=late $EMA --config.num_epochs=25 --config.seed=2"
)
train_all "${VARIANTS[@]}"

existing=() labels=()
for entry in "${VARIANTS[@]}"; do
  read -r name _ <<<"$entry"
  [[ -f "$RUNS/$name/report/results.json" ]] || continue
  existing+=("$RUNS/$name")
  seed=${name##*_s} label=${name%_s*}
  (( seed > 0 )) && label="$label [seed $seed]"  # The table's seed groups.
  labels+=("$label")
done
list=$(IFS=,; echo "${existing[*]}") names=$(IFS=,; echo "${labels[*]}")
# Choosing: the grown validation split (the synthetic set draws every image from its own seed, so
# the training images stay the same and the split just grows).
"$PY" -m minijax.projects.task1.report --workdirs="$list" --out="$RUNS/report_val" --split=val \
    --set=data.synthetic.val_per_class=100 --nobench --labels="$names" --stem_cost_sizes=
"$PY" -m minijax.projects.task1.report --workdirs="$list" --out="$RUNS/report" --labels="$names"
report_failures
