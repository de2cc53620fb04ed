#!/usr/bin/env bash
# Table 1 with the whole network fine-tuned from the ImageNet MobileNet 0.25 file at 224 px, on 2 CPU cores
# (issue 14, item 3: "fine-tuned wherever the budget allows"). The same budget as tables_224.sh's frozen tables
# (15 epochs, batch 16, lr 1e-3), no feature cache: every step runs the backbone forward and backward.
# One resumable `mims bench` per table: run again after an interruption and finished (preset, seed) rows are kept.
# What the 2-core budget allows: BreastMNIST (546 training images), about 2 to 4 min a run. PneumoniaMNIST (4,708)
# and Kather tiles (about 3,500) are 8 to 9 times more images a run and are left to a GPU (finetune_gpu.sh).
# The presets: the eight of the GPU run (finetune_gpu.sh), the paper's comparisons. Left out: resnet34_scratch
# (ResNet-34 from scratch at 224 px is beyond 2 CPU cores; see README), pyramid_mi_pre and the two patchcls
# variants (time; add them with --presets to the mims bench line below and the table resumes).
#   bash benchmarks/tables_224_finetuned.sh                 # breastmnist
#   bash benchmarks/tables_224_finetuned.sh pneumoniamnist  # another dataset, if you have the time
set -euo pipefail
cd "$(dirname "$0")/.."
TABLE1="mims mi_pre mi_pre_conv si_cnn mims_noresizing featpyra_45 mi_pre_trident pyramid_mims"
for dataset in ${@:-breastmnist}; do
  mims bench table1 --dataset "$dataset" --presets $TABLE1 \
    --backbone mobilenet --alpha 0.25 --weights ../shared/weights/mobilenet_2_5_224_tf_no_top.h5 \
    --image-size 224 --epochs 15 --batch-size 16 --learning-rate 0.001 --tag 224_finetuned
done
