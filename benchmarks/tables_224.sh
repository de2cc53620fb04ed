#!/usr/bin/env bash
# The paper's tables at 224 px with the ImageNet MobileNet 0.25 file, backbone frozen, each head trained on the
# backbone's cached features (issue 14, item 3). One resumable `mims bench` per table: run the script again
# after an interruption and finished (preset, seed) rows are kept. Features are cached in runs/feature_cache,
# shared by the presets of a dataset (one extraction per seed and pyramid level / feature layer).
# resnet34_scratch is left out: it trains ResNet-34 from scratch, which a frozen cache cannot do, and at 224 px
# that is beyond 2 CPU cores (see README). Measured on 2 cores: see each folder's table.md for its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
TABLE1="mi_pre pyramid_mi_pre mi_pre_conv mims_noresizing pyramid_mims mi_pre_trident si_cnn featpyra_45 mims mims_patchcls mi_pre_conv_patchcls"
COMMON=(--backbone mobilenet --alpha 0.25 --weights ../shared/weights/mobilenet_2_5_224_tf_no_top.h5 --image-size 224
        --freeze-backbone --epochs 15 --batch-size 16 --learning-rate 0.001 --cache-dir runs/feature_cache --tag 224_frozen)
datasets=("${@:-breastmnist kather-crc-msi-tiles pneumoniamnist}")
for dataset in ${datasets[@]}; do
  mims bench table1 --dataset "$dataset" --presets $TABLE1 "${COMMON[@]}"
done
for dataset in ${datasets[@]}; do
  mims bench table2 --dataset "$dataset" "${COMMON[@]}"
done
