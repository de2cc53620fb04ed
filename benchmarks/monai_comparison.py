"""MIMS (Keras 3 / TensorFlow) versus MONAI's `MILModel` (PyTorch): training step and inference per bag.

Both models use a ResNet-50 backbone with random weights (weights=None), one bag of
16 instances at 224x224 per step, two classes, Adam, cross-entropy. Each framework
runs in its own process (so their thread pools never compete) and tries each of
its settings on this CPU; its steps are interleaved round by round across those
settings, and the median of each is kept. The figures compare each framework at
its best (fastest) setting, training and inference separately:

    pip install monai torch==2.13.0       # CPU build; MONAI's ResNet-50, no torchvision needed
    python benchmarks/monai_comparison.py
    python benchmarks/monai_comparison.py --instances 4 --image-size 64 --rounds 2   # quick check

MILModel's default backbone is torchvision's ResNet-50, whose PyPI wheel does not
import beside the CPU torch file here; MONAI's own 2D ResNet-50
(`monai.networks.nets.resnet50`, the same bottleneck layout, 23.5 M parameters
without the classifier) is passed as its custom backbone instead. mil_mode "att"
(MILModel's default: attention pooling of the 2048-d instance features).

Ends with `mims_over_monai_train: R` and `mims_over_monai_infer: R` (target <= 0.8).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)

from _timing import interleaved_medians  # noqa: E402  (benchmarks/_timing.py)


def _medians(steps, args):
    return interleaved_medians(steps, args.rounds, args.warmup, label="    ", stream=sys.stderr)


def mims_worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    from mims_tf.models import build_model

    rng = np.random.default_rng(0)
    bags = rng.uniform(0, 255, size=(1, args.instances, args.image_size, args.image_size, 3)).astype("float32")
    labels = np.array([1])
    policies = {"fp32": ("float32", False), "fp32_xla": ("float32", True), "bf16": ("mixed_bfloat16", False)}
    models = {}
    for name in args.mims_settings.split(","):
        policy, xla = policies[name]
        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(0)
        model = build_model("mims", backbone="resnet50", weights=None, image_size=(args.image_size,) * 2)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", jit_compile=xla)
        start = time.perf_counter()
        model.train_on_batch(bags, labels)
        model.predict_on_batch(bags)
        print(f"  mims {name}: built and traced in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        models[name] = model
        keras.config.set_dtype_policy("float32")
    print("  mims training steps", file=sys.stderr, flush=True)
    train = _medians({n: (lambda m=m: m.train_on_batch(bags, labels)) for n, m in models.items()}, args)
    print("  mims inference per bag", file=sys.stderr, flush=True)
    infer = _medians({n: (lambda m=m: m.predict_on_batch(bags)) for n, m in models.items()}, args)
    parameters = models[next(iter(models))].get_layer("backbone").count_params()
    return {"train": train, "infer": infer, "backbone_parameters": parameters,
            "versions": f"TensorFlow {tf.__version__}, Keras {keras.__version__}"}


def monai_worker(args):
    import monai
    import torch
    from monai.networks.nets import MILModel, resnet50

    torch.manual_seed(0)
    bags = torch.rand(1, args.instances, 3, args.image_size, args.image_size)
    labels = torch.tensor([1])
    runs = {}
    for name in args.monai_settings.split(","):
        torch.manual_seed(0)
        backbone = resnet50(spatial_dims=2, n_input_channels=3, feed_forward=False, pretrained=False)
        model = MILModel(num_classes=2, mil_mode="att", pretrained=False, backbone=backbone, backbone_num_features=2048)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_function = torch.nn.CrossEntropyLoss()
        channels_last = name.startswith("channels_last")
        dtype = torch.bfloat16 if name.endswith("bf16") else None
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        compiled = torch.compile(model) if name.endswith("compile") else model

        def forward(x, model=compiled, channels_last=channels_last, dtype=dtype):
            if channels_last:  # MILModel folds the bag into (B*N, C, H, W) with a view: lay it out as (B, N, H, W, C)
                x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
            if dtype is not None:
                with torch.autocast("cpu", dtype=dtype):
                    return model(x)
            return model(x)

        def train_step(model=model, optimizer=optimizer, forward=forward):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(forward(bags).float(), labels)
            loss.backward()
            optimizer.step()

        def infer_step(model=model, forward=forward):
            model.eval()
            with torch.inference_mode():
                forward(bags)

        start = time.perf_counter()
        train_step()
        infer_step()
        print(f"  monai {name}: built and first steps in {time.perf_counter() - start:.1f} s", file=sys.stderr,
              flush=True)
        runs[name] = (train_step, infer_step)
    print("  monai training steps", file=sys.stderr, flush=True)
    train = _medians({n: r[0] for n, r in runs.items()}, args)
    print("  monai inference per bag", file=sys.stderr, flush=True)
    infer = _medians({n: r[1] for n, r in runs.items()}, args)
    parameters = sum(p.numel() for p in backbone.parameters())
    return {"train": train, "infer": infer, "backbone_parameters": parameters,
            "versions": f"PyTorch {torch.__version__}, MONAI {monai.__version__}, threads {torch.get_num_threads()}"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--instances", type=int, default=16, help="instances per bag (one bag per step)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mims-settings", default="fp32,bf16", help="of fp32, bf16, fp32_xla (XLA: 2.5x slower here)")
    parser.add_argument("--monai-settings", default="fp32,channels_last,bf16",
                        help="of fp32, channels_last, bf16, channels_last_bf16, fp32_compile (torch.compile)")
    parser.add_argument("--worker", choices=("mims", "monai"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = (mims_worker if args.worker == "mims" else monai_worker)(args)
        print(json.dumps(result))
        return

    print(f"monai_comparison: ResNet-50 weights=None, bag 1x{args.instances} at {args.image_size}x{args.image_size}, "
          f"{args.rounds} rounds (median), cpu={platform.processor() or platform.machine()} cores={os.cpu_count()}",
          flush=True)
    results = {}
    for worker in ("mims", "monai"):
        print(f"{worker}:", flush=True)
        completed = subprocess.run([sys.executable, HERE, *sys.argv[1:], "--worker", worker],
                                   stdout=subprocess.PIPE, text=True, check=True)
        results[worker] = json.loads(completed.stdout.strip().splitlines()[-1])
        print(f"  {results[worker]['versions']}; backbone parameters {results[worker]['backbone_parameters']:,}")
        for kind in ("train", "infer"):
            print(f"  {kind}: " + ", ".join(f"{n} {s:.3f} s" for n, s in results[worker][kind].items()), flush=True)
    figures = {}
    for kind in ("train", "infer"):
        best = {w: min(results[w][kind].items(), key=lambda item: item[1]) for w in results}
        print(f"best {kind}: mims {best['mims'][0]} {best['mims'][1]:.3f} s, monai {best['monai'][0]} "
              f"{best['monai'][1]:.3f} s")
        figures[f"mims_over_monai_{kind}"] = best["mims"][1] / best["monai"][1]
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
