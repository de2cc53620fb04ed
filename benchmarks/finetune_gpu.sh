#!/usr/bin/env bash
# benchmarks/finetune_gpu.py on the lent GPU machine (JAX and PyTorch there, no TensorFlow): the Table 1 presets
# fine-tuned at 224 px from the ImageNet MobileNet 0.25 file, under KERAS_BACKEND=jax. Arguments go to the .py.
# Needs in .whl/ the Keras wheel, its two missing dependencies (README, "GPU check") and h5py (the .h5 weights):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 h5py -d .whl
# and, prepared here first (../shared does not travel to the device; .gpu_data/ is git-ignored):
#   mkdir -p .gpu_data && cp ../shared/data/breastmnist/breastmnist.npz ../shared/data/pneumoniamnist/pneumoniamnist.npz \
#     ../shared/weights/mobilenet_2_5_224_tf_no_top.h5 .gpu_data/
# Device call: carry [".whl", ".gpu_data"], e.g. bash benchmarks/finetune_gpu.sh --deadline-s 480
# Output in $OUT/finetune_gpu/: log.txt, results.csv, and the test scores of every run packed in scores.tgz
# (scores_<dataset>_<preset>_s<seed>.csv inside): the device returns at most 8 files a call, so loose score files
# were lost (two in session 10, six in session 12).
set -uo pipefail
OUT=${OUT:-/tmp/mims-finetune-gpu}
export OUT
mkdir -p "$OUT/finetune_gpu"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
# JAX's persistent compilation cache: a preset rebuilt for the next seed (same layer names after clear_session)
# may then reuse its compiled steps instead of compiling again.
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
nvidia-smi -L
python3 benchmarks/finetune_gpu.py --out "$OUT" "$@" 2>&1 | grep -v -E "^(WARNING|I0000|E0000|W0000)" \
  | tee "$OUT/finetune_gpu/log.txt"
(cd "$OUT/finetune_gpu" && ls scores_*.csv >/dev/null 2>&1 && tar czf scores.tgz scores_*.csv && rm -f scores_*.csv)
