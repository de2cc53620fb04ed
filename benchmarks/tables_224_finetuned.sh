#!/usr/bin/env bash
# Table 1 with the whole network fine-tuned from the ImageNet MobileNet 0.25 file at 224 px, on 2 CPU cores
# (issue 14, item 3: "fine-tuned wherever the budget allows"). The same budget as tables_224.sh's frozen tables
# (15 epochs, batch 16, lr 1e-3), no feature cache: every step runs the backbone forward and backward.
# One resumable `mims bench` per table: run again after an interruption and finished (preset, seed) rows are kept.
# What the 2-core budget allows: BreastMNIST (546 training images), about 2 to 4 min a run. PneumoniaMNIST (4,708)
# and Kather tiles (about 3,500) are 8 to 9 times more images a run and are left to a GPU (finetune_gpu.sh).
# The presets: MIMS and the four single-scale or no-resizing designs it is measured against first (pooling the
# features directly, a convolution on them, MSConv without resizing, single-instance training). Left out for time:
# the image-pyramid and feature-pyramid designs (2 to 3 times the backbone work a step), the patchcls variants
# (the same functions as their twins at one image per bag) and resnet34_scratch (ResNet-34 from scratch at 224 px
# is beyond 2 CPU cores); add presets to TABLE1 and run again: finished rows are kept.
#   bash benchmarks/tables_224_finetuned.sh                 # breastmnist
#   bash benchmarks/tables_224_finetuned.sh pneumoniamnist  # another dataset, if you have the time
set -euo pipefail
cd "$(dirname "$0")/.."
TABLE1="mims mi_pre mi_pre_conv mims_noresizing si_cnn"
for dataset in ${@:-breastmnist}; do
  mims bench table1 --dataset "$dataset" --presets $TABLE1 \
    --backbone mobilenet --alpha 0.25 --weights ../shared/weights/mobilenet_2_5_224_tf_no_top.h5 \
    --image-size 224 --epochs 15 --batch-size 16 --learning-rate 0.001 --tag 224_finetuned
done
