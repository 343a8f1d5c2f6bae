#!/usr/bin/env bash
# One call on a lent GPU machine: install the offline wheels, check, time, write under $OUT.
#   mkdir -p .whl && cp ../shared/wheels-gpu-py312/*.whl .whl/   # .whl/ is git-ignored
#   device run, carry [".whl"], command: bash benchmarks/gpu_check.sh   (about 8 minutes)
# Prints and writes: model-only train img/s of ImprovedCNN/ComplexCNN/ResNet34 at 256x256, batch 64,
# float32 and bfloat16 (compare with the anchors in README), and ResNet34 end to end from a prepared
# dataset, on device and streamed, against model-only in the same run.
set -uo pipefail
OUT=${OUT:-/tmp/minijax_gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  > "$OUT/pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, optax, orbax.checkpoint, grain; print('jax', jax.__version__, jax.devices())" \
  2>&1 | tee "$OUT/versions.txt"

timeout 330 python3 benchmarks/train_throughput.py --image_size=256 --batch_size=64 --steps=40 \
  --warmup=5 --json="$OUT/throughput.json" 2>&1 | grep -v "^[IW][0-9]" | tee "$OUT/throughput.txt"

timeout 200 python3 benchmarks/end_to_end.py --model=resnet34 --image_size=256 --batch_size=64 \
  --steps=100 --train_per_class=300 --num_threads=16 --json="$OUT/end_to_end.json" 2>&1 \
  | grep -v "^[IW][0-9]" | tail -6 | tee "$OUT/end_to_end.txt"
echo "done; results in $OUT"
