"""The frozen-backbone fast path against fine-tuning, on the same data in one run.

BreastMNIST (546 training, 78 validation, 156 test images) at 224 px with the ImageNet MobileNet 0.25
file, preset `mims`, batch 16, learning rate 1e-3 (the backbone at half), `--epochs` epochs, the best
validation epoch kept and scored on the test split, as `mims evaluate` scores it. Three ways:

- `finetuned`: the whole model trains (`mims train`);
- `frozen_cached`: `--freeze-backbone`: the backbone's features are computed once (4 views per
  training image: as it is and 3 augmented), then only the head trains on them;
- `frozen`: `--freeze-backbone --feature-views 0`: the same frozen model, the backbone run every step.

Every (way, seed) trains in a fresh process, one after another (never two at once). Epoch time is the
median of epochs 2 to the last (epoch 1 carries tracing), validation and checkpoints included (its
training steps alone are given too); `setup` is from the
start of `train()` to the first epoch (reading bags, building the model, and for `frozen_cached` the
feature extraction).

    python benchmarks/frozen_features.py                  # 3 ways x 3 seeds, 10 epochs: about 15 min on 2 cores
    python benchmarks/frozen_features.py --seeds 0 --epochs 2   # a quick check

Ends with `name: value` lines: `frozen_cached_over_finetuned_epoch` (the issue's target: <= 0.1),
`frozen_over_finetuned_epoch`, the same for the whole run, and the mean test AUROC of each way.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = os.path.join(ROOT, "..", "shared", "data", "breastmnist", "breastmnist.npz")
WEIGHTS = os.path.join(ROOT, "..", "shared", "weights", "mobilenet_2_5_224_tf_no_top.h5")
WAYS = {"finetuned": {}, "frozen_cached": {"freeze_backbone": True},
        "frozen": {"freeze_backbone": True, "feature_views": 0}}


def child(args):
    """Trains one (way, seed), times its epochs and scores the test split; prints one JSON line."""
    import keras

    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.evaluate import evaluate_run
    from mims_tf.runs.fit import train

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first = None
            self.epochs = []

            self.steps = []

        def on_epoch_begin(self, epoch, logs=None):
            self.first = self.first or time.perf_counter()
            self.begin = time.perf_counter()

        def on_test_begin(self, logs=None):
            self.steps.append(time.perf_counter() - self.begin)

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.begin)

    run_dir = os.path.join(args.work, f"{args.way}_s{args.seed}")
    config = RunConfig.from_dict({
        "model": {"preset": "mims", "backbone": "mobilenet", "weights": WEIGHTS, "backbone_kwargs": {"alpha": 0.25},
                  "kernels": "crc", **{k: v for k, v in WAYS[args.way].items() if k != "feature_views"}},
        "data": {"source": DATA, "image_size": 224, "instances": 1},
        "training": {"batch_size": 16, "epochs": args.epochs, "learning_rate": 1e-3, "checkpoint_steps": 10**6,
                     "feature_views": WAYS[args.way].get("feature_views", 4)},
        "seed": args.seed, "out": run_dir,
    })
    clock = Clock()
    start = time.perf_counter()
    summary = train(config, overwrite=True, verbose=0, callbacks=[clock])
    seconds = time.perf_counter() - start
    result = evaluate_run(run_dir, threshold=None)
    return {"way": args.way, "seed": args.seed, "setup": clock.first - start, "epochs": clock.epochs,
            "steps": clock.steps,
            "seconds": seconds, "val_auroc": summary["best_val_auroc"], "best_epoch": summary["best_epoch"],
            "test_auroc": result["auroc"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "frozen_features"))
    parser.add_argument("--work", default=os.path.join(ROOT, "runs", "frozen_features"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return
    from mims_tf.utils import write_json, write_text

    ways, seeds = args.ways.split(","), [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    results = []
    for seed in seeds:
        for way in ways:
            command = [sys.executable, HERE, "--child", "--way", way, "--seed", str(seed), "--epochs",
                       str(args.epochs), "--work", args.work]
            completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            epoch = statistics.median(result["epochs"][1:] or result["epochs"])
            steps = statistics.median(result["steps"][1:] or result["steps"])
            print(f"{way} seed {seed}: setup {result['setup']:.1f} s, epoch {epoch:.2f} s, "
                  f"run {result['seconds']:.0f} s, test AUROC {result['test_auroc']:.4f} "
                  f"(val {result['val_auroc']:.4f} at epoch {result['best_epoch']})",
                  flush=True)
            results.append(dict(result, epoch=epoch, train_steps=steps))
            write_json(os.path.join(args.out, "results.json"), results)

    def mean(way, key):
        return statistics.mean(r[key] for r in results if r["way"] == way)

    def sd(way, key):
        values = [r[key] for r in results if r["way"] == way]
        return statistics.stdev(values) if len(values) > 1 else 0.0

    lines = ["# Frozen backbone with cached features vs fine-tuning (`benchmarks/frozen_features.py`)", "",
             f"BreastMNIST at 224 px, MobileNet 0.25 (ImageNet file), preset `mims`, batch 16, {args.epochs} epochs, "
             f"seeds {args.seeds}; mean +- sd over seeds.", "",
             "| way | setup (s) | epoch (s) | its training steps (s) | whole run (s) | test AUROC |",
             "|---|---|---|---|---|---|"]
    for way in ways:
        lines.append(f"| `{way}` | {mean(way, 'setup'):.1f} | {mean(way, 'epoch'):.2f} | "
                     f"{mean(way, 'train_steps'):.2f} | "
                     f"{mean(way, 'seconds'):.0f} | "
                     f"{mean(way, 'test_auroc'):.4f} +- {sd(way, 'test_auroc'):.4f} |")
    figures = {}
    if "finetuned" in ways:
        for way in ways:
            if way != "finetuned":
                figures[f"{way}_over_finetuned_epoch"] = mean(way, "epoch") / mean("finetuned", "epoch")
                figures[f"{way}_over_finetuned_steps"] = mean(way, "train_steps") / mean("finetuned", "train_steps")
                figures[f"{way}_over_finetuned_run"] = mean(way, "seconds") / mean("finetuned", "seconds")
    for way in ways:
        figures[f"test_auroc_{way}"] = mean(way, "test_auroc")
    lines += ["", "```", *[f"{name}: {value:.4f}" for name, value in figures.items()], "```"]
    write_text(os.path.join(args.out, "table.md"), "\n".join(lines) + "\n")
    print("\n".join(lines[-len(figures) - 1:-1]))


if __name__ == "__main__":
    main()
