"""Training-step time of `mims` and `pyramid_mi_pre` relative to `mi_pre`, measured side by side.

Paper (section 1 and 3.3): the MSConv head adds an insignificant cost; image
pyramids cost about twice as much. All three models use the same backbone
(ResNet-50, weights=None), the same bag and the same optimizer; the steps of the
three models are interleaved round by round so that machine noise hits all of
them alike, and the median step time of each is compared.

    python benchmarks/head_overhead.py                     # ResNet-50, 224x224, 8 instances
    python benchmarks/head_overhead.py --backbone tiny --image-size 32 --rounds 3   # quick check

Ends with one `name: value` line per figure:
    mims_over_mi_pre_fp32, mims_over_mi_pre_bf16, pyramid_over_mi_pre_fp32, pyramid_over_mi_pre_bf16
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mims_tf.models import build_model  # noqa: E402
from mims_tf.train import paper_optimizer  # noqa: E402

from _timing import interleaved_medians  # noqa: E402  (benchmarks/_timing.py)

MODELS = ("mi_pre", "mims", "pyramid_mi_pre")
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def step_times(precision, args, bags, labels):
    keras.config.set_dtype_policy(PRECISIONS[precision])
    models = {}
    for name in MODELS:
        keras.utils.set_random_seed(0)
        model = build_model(name, backbone=args.backbone, weights=None, image_size=(args.image_size,) * 2)
        model.compile(optimizer=paper_optimizer(1e-4), loss="sparse_categorical_crossentropy")
        start = time.perf_counter()
        model.train_on_batch(bags, labels)
        print(f"  {precision} {name}: built and traced in {time.perf_counter() - start:.1f} s", flush=True)
        models[name] = model
    steps = {name: (lambda m=model: m.train_on_batch(bags, labels)) for name, model in models.items()}
    medians = interleaved_medians(steps, args.rounds, args.warmup, label=f"  {precision} ")
    keras.config.set_dtype_policy("float32")
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--instances", type=int, default=8, help="instances per bag (one bag per step)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    bags = rng.uniform(0, 255, size=(1, args.instances, args.image_size, args.image_size, 3)).astype("float32")
    labels = np.array([1])
    print(
        f"head_overhead: backbone={args.backbone} weights=None image={args.image_size}x{args.image_size} "
        f"bag=1x{args.instances} rounds={args.rounds} keras={keras.__version__} "
        f"backend={keras.backend.backend()} cpu={platform.processor() or platform.machine()} "
        f"cores={os.cpu_count()}",
        flush=True,
    )
    figures = {}
    for precision in args.precisions.split(","):
        medians = step_times(precision, args, bags, labels)
        for name in MODELS:
            print(f"  {precision} median step {name}: {medians[name]:.3f} s")
        figures[f"mims_over_mi_pre_{precision}"] = medians["mims"] / medians["mi_pre"]
        figures[f"pyramid_over_mi_pre_{precision}"] = medians["pyramid_mi_pre"] / medians["mi_pre"]
    for name in [f"{m}_over_mi_pre_{p}" for m in ("mims", "pyramid") for p in args.precisions.split(",")]:
        print(f"{name}: {figures[name]:.3f}")


if __name__ == "__main__":
    main()
