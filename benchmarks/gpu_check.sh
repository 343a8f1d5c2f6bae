#!/usr/bin/env bash
# One call on a lent GPU machine: install the offline wheels, check, time, write under $OUT.
#
#   mkdir -p .whl && cp /work/shared/wheels-gpu-py312/*.whl .whl/    # .whl/ is git-ignored
#   device run, carry [".whl"], timeout_s 540, command: bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh --dry-run     # the same stages, tiny, on this CPU (minutes)
#
# Writes under $OUT (default /tmp/minijax_gpu_out), as it goes:
#   summary.txt   one line per stage (exit status, seconds) and every img/s line, appended live
#   summary.md    the table of all figures next to the PyTorch / plain-JAX anchors
#                 (benchmarks/gpu_report.py; rewritten after every stage)
#   e2e_<model>.json / .txt   benchmarks/end_to_end.py: train img/s of improvedcnn, complexcnn,
#                 resnet34 at 256 px, bf16 and fp32, batch 64 and 256: model-only (the trainer's
#                 step on a batch on the device) vs end to end through minijax.train.train from a
#                 prepared dataset, split held on the device (8 steps per call) and streamed
#   host_loop.json / .txt     benchmarks/host_loop.py at batch 64 and 256 (the host's cost/step)
#   gpu.txt, versions.txt, pip.txt, prepare.txt
#
# Time budget (GPU, total <= 8 min including install and compiles; BUDGET=450 s for the stages,
# the rest is margin): setup 60 s, prepare 60 s, ResNet34 150 s, ComplexCNN 80 s, host_loop 50 s,
# ImprovedCNN what is left (about 50 s; its batch-256 rows are the first to be skipped), report
# 10 s. Every stage runs under `timeout` with at most what is left, and end_to_end.py skips the
# measurements that would start past its own --budget_seconds: a slow compile costs the last rows,
# not the run. One persistent compilation cache (JAX_COMPILATION_CACHE_DIR) serves all stages: a
# step compiled for model-only is reused by the streamed trainer run. If the dataset cannot be
# prepared, model-only figures come from benchmarks/train_throughput.py instead.
set -u -o pipefail

DRY_RUN=0
case "${1:-}" in
  --dry-run|--cpu) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/minijax_gpu_out}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
rm -f "$OUT"/e2e_*.json "$OUT"/throughput_*.json "$OUT/host_loop.json" "$OUT/summary.md"
START=$(date +%s)
RESERVE=15  # Seconds kept for the report.

if (( DRY_RUN )); then
  PYTHON=${PYTHON:-python3}
  BUDGET=${BUDGET:-900}
  export JAX_PLATFORMS=cpu
  SIZE=16 BATCHES=8,16 STEPS=4 LOG_EVERY=2 PER_CLASS=2 THREADS=2
  # XLA:CPU runs a while loop's body many times slower: one step per call on the CPU.
  STEPS_PER_CALL=1 HOST_STEPS=8 HOST_BATCHES=8,16
  T_SETUP=60 T_PREPARE=120 T_R34=360 T_CNN=200 T_HOST=120 T_IMPROVED=300
else
  PYTHON=${PYTHON:-python3}
  BUDGET=${BUDGET:-450}
  SIZE=256 BATCHES=64,256 STEPS=32 LOG_EVERY=8 PER_CLASS=20 THREADS=8
  STEPS_PER_CALL=8 HOST_STEPS=100 HOST_BATCHES=64,256
  T_SETUP=60 T_PREPARE=60 T_R34=150 T_CNN=80 T_HOST=50 T_IMPROVED=400
fi
DATA_DIR=${DATA_DIR:-/tmp/minijax_gpu_tfds}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/minijax_gpu_jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export MINIJAX_COMPILATION_CACHE_DIR=$JAX_COMPILATION_CACHE_DIR
export MINIJAX_DATA_DIR=${MINIJAX_DATA_DIR:-/tmp/minijax_gpu_data}
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
note() { echo "[$(printf '%4d' "$(elapsed)") s] $*" | tee -a "$SUMMARY"; }

# stage NAME SECONDS COMMAND...: runs COMMAND under timeout (at most what is left of the budget),
# its output in $OUT/NAME.txt and its img/s lines appended to summary.txt as they come. Never
# stops the script; returns the command's status.
stage() {
  local name=$1 want=$2
  shift 2
  local remaining=$(( $(left) - RESERVE ))
  if (( remaining < 20 )); then
    note "$name: SKIPPED ($(left) s of the budget left)"
    return 124
  fi
  local limit=$(( want < remaining ? want : remaining ))
  local t0
  t0=$(date +%s)
  note "$name: start (limit $limit s)"
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt" \
    | grep --line-buffered -E "img/s|FAILED|skipped|Error|error:" | grep --line-buffered -v "^[IWE][0-9]{4}" \
    >> "$SUMMARY"
  local rc=${PIPESTATUS[0]}
  note "$name: rc=$rc in $(( $(date +%s) - t0 )) s$( (( rc == 124 || rc == 137 )) && echo ' (timed out)')"
  "$PYTHON" benchmarks/gpu_report.py "$OUT" > /dev/null 2>&1 || true
  return "$rc"
}

# ------------------------------------------------------------------------------------------ setup
note "gpu_check: $( (( DRY_RUN )) && echo 'dry run on the CPU' || echo 'GPU run'), budget $BUDGET s, OUT=$OUT"
if (( DRY_RUN )); then
  note "setup: dry run, no wheels installed (using $PYTHON's packages)"
else
  if compgen -G ".whl/*.whl" > /dev/null; then
    rm -rf /tmp/site
    timeout 120 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
      .whl/*.whl > "$OUT/pip.txt" 2>&1
    note "setup: pip install of $(ls .whl/*.whl | wc -l) wheels: rc=$?"
    export PYTHONPATH=/tmp/site:$PWD
  else
    note "setup: no .whl/*.whl in the checkout (copy /work/shared/wheels-gpu-py312/*.whl there); using the image's packages"
    export PYTHONPATH=$PWD
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
  note "setup: $(tail -n +2 "$OUT/gpu.txt" | head -1)"
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
timeout "$T_SETUP" "$PYTHON" -c "
import sys, jax, flax, optax, orbax.checkpoint, grain, ml_collections, tensorflow_datasets
print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__,
      'optax', optax.__version__, 'grain', getattr(grain, '__version__', '?'), jax.devices())
" > "$OUT/versions.txt" 2>&1
note "setup: rc=$? $(tail -1 "$OUT/versions.txt")"

E2E=("$PYTHON" benchmarks/end_to_end.py "--image_size=$SIZE" "--batch_sizes=$BATCHES"
     "--steps=$STEPS" "--log_every=$LOG_EVERY" "--steps_per_call=$STEPS_PER_CALL"
     "--train_per_class=$PER_CLASS" "--num_threads=$THREADS" "--data_dir=$DATA_DIR"
     "--dtypes=bfloat16,float32")

# ---------------------------------------------------------------------------------------- prepare
stage prepare "$T_PREPARE" "${E2E[@]}" --prepare_only
PREPARED=$?

# One process per model: a crash loses that model's rows only. --budget_seconds leaves the
# stage's last 30 s (a compile) unstarted.
e2e() {
  local model=$1 want=$2
  local remaining=$(( $(left) - RESERVE ))
  local limit=$(( want < remaining ? want : remaining ))
  stage "e2e_$model" "$want" "${E2E[@]}" "--models=$model" "--json=$OUT/e2e_$model.json" \
    "--budget_seconds=$(( limit > 60 ? limit - 30 : limit / 2 ))"
}
throughput() {
  local model=$1 want=$2 batch
  for batch in ${BATCHES//,/ }; do
    stage "throughput_${model}_b$batch" "$want" "$PYTHON" benchmarks/train_throughput.py \
      "--models=$model" --dtypes=bfloat16,float32 "--image_size=$SIZE" "--batch_size=$batch" \
      "--steps=$STEPS" --warmup=2 "--json=$OUT/throughput_${model}_b$batch.json"
  done
}
train_stage() {
  if (( PREPARED == 0 )); then e2e "$@"; else throughput "$1" $(( $2 / 2 )); fi
}

# -------------------------------------------------------------------------------------- training
train_stage resnet34 "$T_R34"
train_stage complexcnn "$T_CNN"
stage host_loop "$T_HOST" "$PYTHON" benchmarks/host_loop.py "--batch_sizes=$HOST_BATCHES" \
  "--steps=$HOST_STEPS" --repeats=1 --state=tiny --steps_per_call=1,8 \
  "--json=$OUT/host_loop.json"
train_stage improvedcnn "$T_IMPROVED"

# ----------------------------------------------------------------------------------------- report
"$PYTHON" benchmarks/gpu_report.py "$OUT" > /dev/null 2> "$OUT/report_error.txt"
note "report: rc=$? $OUT/summary.md; total $(elapsed) s"
cat "$OUT/summary.md" 2>/dev/null
exit 0
