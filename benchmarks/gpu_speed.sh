#!/usr/bin/env bash
# benchmarks/gpu_speed.py on the lent GPU machine (JAX and PyTorch there, no TensorFlow): MIMS under
# KERAS_BACKEND=jax against MONAI's MILModel. Needs in .whl/ the Keras wheel, its two missing
# dependencies and MONAI (README, "GPU check"). Output in $OUT/gpu_speed.log.
set -uo pipefail
OUT=${OUT:-/tmp/mims-gpu-speed}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi -L
python3 benchmarks/gpu_speed.py "$@" 2>&1 | grep -v -E "^(WARNING|I0000|E0000|W0000)" | tee "$OUT/gpu_speed.log"
