#!/usr/bin/env bash
# GPU check under the JAX backend, for a machine with JAX but no TensorFlow (the lent device):
# the layer tests, the precision / optimizer tests and one preset's full cycle, one mixed_float16
# training step (in test_precision.py), and the head-overhead ratios on the GPU.
# Needs the Keras wheel and its missing dependencies in .whl/ (see README, "GPU check").
set -uo pipefail
OUT=${OUT:-/tmp/mims-gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, keras.backend.backend())"
python3 -m pytest -q -p no:cacheprovider tests/layers tests/models/test_precision.py tests/train \
  "tests/models/test_presets.py::test_preset_builds_trains_saves_and_reloads[mims]" 2>&1 | tee "$OUT/pytest_jax_gpu.log"
timeout "${BENCH_TIMEOUT:-300}" python3 benchmarks/head_overhead.py --precisions fp32,fp16 --instances 16 --rounds 10 \
  2>&1 | grep -v -E "^(WARNING|I0000|E0000)" | tee "$OUT/head_overhead_gpu.log"
