"""The paper's Table 1 presets fine-tuned (the whole model trains) at 224 px with the ImageNet MobileNet 0.25 file.

Written for the lent GPU machine (JAX and PyTorch, no TensorFlow): runs under `KERAS_BACKEND=jax` (or torch,
or tensorflow) and imports nothing that imports TensorFlow (from the package: `mims_tf.models`,
`mims_tf.train`, `mims_tf.stats.bootstrap` only).

- Data: MedMNIST `.npz` files (`--data`); each image is a bag of one instance. Every split is resized once
  (bilinear, `keras.ops.image.resize`, on the device), rounded to uint8 and repeated to 3 channels, as
  `mims train`'s bag source does with `image_size` set (`resize_instances`); bags stay uint8 on the host and
  the model casts them on the device (pixel values in [0, 255], its `BackbonePreprocessing` maps them to
  [-1, 1] for MobileNet).
- Model: `build_model(preset, backbone="mobilenet", backbone_kwargs={"alpha": 0.25}, weights=<.h5>,
  kernels="crc", image_size=(224, 224))` and `compile_model` (Adam, the backbone at half the head's
  learning rate, sparse categorical cross-entropy, BagAUROC), as `mims train` builds and compiles it;
  precision `auto`: mixed_float16 on a GPU (the package's GPU default; Keras adds loss scaling), float32 else.
- Training: batch 16, learning rate 1e-3, `--epochs` epochs of ceil(N / 16) full batches drawn from an endless
  stream of seeded shuffles (as `mims train`'s repeating pipeline: no partial batch, so no retrace), one
  `train_on_batch` a step. Augmentation as `mims train`'s `augment_bag`, done with `keras.ops` on the device:
  a random left-right flip, contrast in [0.8, 1.2] about 127.5 and brightness in [-20, 20], clipped to [0, 255]
  (draws from a numpy RNG, not TensorFlow's stateless ops: same distribution, other numbers).
- After each epoch, validation AUROC (ties: the lower validation loss, as `RunCheckpoint`); the best epoch's
  weights (kept in memory) score the test split (positive-class probability).
- Order: for each seed, for each dataset, every preset, so a run stopped by `--deadline-s` leaves every preset
  with the first seed. Results after every run in `<out>/finetune_gpu/results.csv` and the test scores in
  `scores_<dataset>_<preset>_s<seed>.csv` (bag, label, score), for intervals recomputed later.

    bash benchmarks/finetune_gpu.sh                       # on the lent GPU machine (see the .sh)
    KERAS_BACKEND=tensorflow python benchmarks/finetune_gpu.py --presets mims mi_pre --seeds 0 1 --epochs 1 \\
        --image-size 64 --limit 64                        # CPU smoke test

Ends with a table per dataset (mean +- std test AUROC; AUROC(mims) - AUROC(preset) with its 95 % interval,
`paired_auroc_difference_ci(..., resample_runs=True)` over the seeds as `mims_tf.bench.report` pairs seeds
sharing one test set) and `name: value` lines: `finetuned_<dataset>_<preset>_auroc`,
`finetuned_<dataset>_mims_minus_<preset>`, `runs_done`.
"""

import argparse
import csv
import importlib.util
import math
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repository, for mims_tf

PRESETS = ("mi_pre pyramid_mi_pre mi_pre_conv mims_noresizing pyramid_mims mi_pre_trident si_cnn featpyra_45 mims "
           "mims_patchcls mi_pre_conv_patchcls").split()
FIELDS = ("preset", "seed", "dataset", "val_auroc", "test_auroc", "seconds", "best_epoch")
EVAL_BATCH = 64


def on_gpu():
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf  # only under the TensorFlow backend

    return bool(tf.config.list_physical_devices("GPU"))


def load_splits(path, size, limit):
    """`{split: (bags uint8 (N, 1, size, size, 3), labels int32 (N,))}`."""
    from keras import ops

    data = np.load(path)
    splits = {}
    for split in ("train", "val", "test"):
        images, labels = data[f"{split}_images"][:limit], data[f"{split}_labels"].reshape(-1)[:limit]
        images = images[..., None] if images.ndim == 3 else images
        resized = [np.clip(np.round(ops.convert_to_numpy(ops.image.resize(
            images[i:i + 256].astype(np.float32), (size, size), interpolation="bilinear"))), 0, 255).astype(np.uint8)
            for i in range(0, len(images), 256)]
        bags = np.concatenate(resized)
        bags = np.repeat(bags, 3, axis=-1) if bags.shape[-1] == 1 else bags[..., :3]
        splits[split] = bags[:, None], labels.astype(np.int32)
    return splits


def augment(bags, rng):
    """`augment_bag` of `mims_tf.data.transforms` for a batch, on the device: flip, contrast, brightness."""
    from keras import ops

    shape = (len(bags), 1, 1, 1, 1)
    flip = ops.convert_to_tensor((rng.random(len(bags)) < 0.5).reshape(shape))
    contrast = ops.convert_to_tensor(rng.uniform(0.8, 1.2, shape).astype(np.float32))
    brightness = ops.convert_to_tensor(rng.uniform(-20.0, 20.0, shape).astype(np.float32))
    x = ops.cast(ops.convert_to_tensor(bags), "float32")
    x = ops.where(flip, ops.flip(x, axis=3), x)  # (B, S, H, W, C): W is axis 3
    return ops.clip((x - 127.5) * contrast + 127.5 + brightness, 0.0, 255.0)


def predict(model, bags):
    """Class probabilities, in batches of EVAL_BATCH (the last one padded: one compiled shape)."""
    out = []
    for i in range(0, len(bags), EVAL_BATCH):
        chunk = bags[i:i + EVAL_BATCH]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], EVAL_BATCH - len(chunk), axis=0)])
        out.append(np.asarray(model.predict_on_batch(padded), np.float64)[:len(chunk)])
    return np.concatenate(out)


def one_run(preset, seed, splits, args, precision):
    import keras

    from mims_tf.models import build_model
    from mims_tf.stats.bootstrap import auroc
    from mims_tf.train import compile_model

    keras.utils.set_random_seed(seed)
    size = (args.image_size, args.image_size)
    model = build_model(preset, dtype=precision, backbone="mobilenet", backbone_kwargs={"alpha": 0.25},
                        weights=args.weights, kernels="crc", image_size=size, classes=2)
    compile_model(model, args.learning_rate, 0.5)
    (x, y), (xv, yv) = splits["train"], splits["val"]
    rng, order = np.random.default_rng(seed), np.empty(0, np.int64)
    best = (-1.0, math.inf, None, 0)  # val AUROC, val loss, weights, epoch
    for epoch in range(1, args.epochs + 1):
        for _ in range(math.ceil(len(x) / args.batch_size)):
            while len(order) < args.batch_size:
                order = np.concatenate([order, rng.permutation(len(x))])
            batch, order = order[:args.batch_size], order[args.batch_size:]
            model.train_on_batch(augment(x[batch], rng), y[batch])
        probs = predict(model, xv)
        val_auroc = auroc(yv, probs[:, -1])
        val_loss = float(-np.mean(np.log(np.maximum(probs[np.arange(len(yv)), yv], 1e-7))))
        if val_auroc > best[0] or (val_auroc == best[0] and val_loss < best[1]):
            best = (val_auroc, val_loss, model.get_weights(), epoch)
        print(f"    epoch {epoch}: val AUROC {val_auroc:.4f}, val loss {val_loss:.4f}", flush=True)
    model.set_weights(best[2])
    scores = predict(model, splits["test"][0])[:, -1]
    keras.backend.clear_session()
    return best[0], best[3], scores


def report(rows, scores, datasets, presets):
    from mims_tf.stats.bootstrap import paired_auroc_difference_ci

    lines = []
    for dataset in datasets:
        if not any(r["dataset"] == dataset for r in rows):
            continue
        print(f"\n{dataset}: test AUROC (best validation epoch), mean +- std over seeds; "
              "AUROC(mims) - AUROC(preset), 95 % interval (test bags and seeds resampled)")
        print(f"{'preset':22s} {'seeds':>5s} {'test AUROC':>16s} {'val AUROC':>9s}  mims - preset")
        for preset in presets:
            done = [r for r in rows if r["dataset"] == dataset and r["preset"] == preset]
            if not done:
                continue
            test = [r["test_auroc"] for r in done]
            spread = statistics.stdev(test) if len(test) > 1 else 0.0
            mean = statistics.mean(test)
            lines.append(f"finetuned_{dataset}_{preset}_auroc: {mean:.4f}")
            paired = ""
            seeds = [r["seed"] for r in done if (dataset, "mims", r["seed"]) in scores]
            if preset != "mims" and seeds:
                labels = scores[dataset, "mims", seeds[0]][0]
                d, low, high = paired_auroc_difference_ci(
                    labels, [scores[dataset, "mims", s][1] for s in seeds],
                    [scores[dataset, preset, s][1] for s in seeds], n_resamples=1000, resample_runs=True)
                verdict = "beats" if low > 0 else "loses" if high < 0 else "ties"
                paired = f"{d:+.4f} [{low:+.4f}, {high:+.4f}] {verdict} ({len(seeds)} seeds)"
                lines.append(f"finetuned_{dataset}_mims_minus_{preset}: {d:+.4f}")
            print(f"{preset:22s} {len(done):5d} {mean:9.4f} +- {spread:.4f} "
                  f"{statistics.mean(r['val_auroc'] for r in done):9.4f}  {paired}")
    print()
    for line in lines + [f"runs_done: {len(rows)}"]:
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[os.path.join(ROOT, ".gpu_data", "breastmnist.npz")])
    parser.add_argument("--weights", default=os.path.join(ROOT, ".gpu_data", "mobilenet_2_5_224_tf_no_top.h5"))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="the head's; the backbone's is half")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--limit", type=int, default=None, help="keep the first N images of each split (smoke tests)")
    parser.add_argument("--precision", default="auto", help="auto (mixed_float16 on a GPU, else float32) or a policy")
    parser.add_argument("--deadline-s", type=float, default=480, help="no new run once it would end past this")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    args = parser.parse_args()
    start = time.monotonic()

    import keras

    if importlib.util.find_spec("h5py") is None:  # keras.applications reads the .h5 weights with it
        sys.exit("h5py is missing: put its wheel in .whl/ (see benchmarks/finetune_gpu.sh)")
    from mims_tf.models import get_preset
    from mims_tf.stats.bootstrap import auroc

    for preset in args.presets:
        get_preset(preset)  # an unknown name fails now, not after an hour
    precision = args.precision if args.precision != "auto" else "mixed_float16" if on_gpu() else "float32"
    out = os.path.join(args.out, "finetune_gpu")
    os.makedirs(out, exist_ok=True)
    print(f"finetune_gpu: Keras {keras.__version__} on {keras.backend.backend()}, {precision}, "
          f"{args.image_size} px, {args.epochs} epochs, batch {args.batch_size}, lr {args.learning_rate:g}", flush=True)
    data = {}
    for path in args.data:
        data[os.path.basename(path).rsplit(".", 1)[0]] = splits = load_splits(path, args.image_size, args.limit)
        print(f"  {path}: " + ", ".join(f"{k} {len(v[1])}" for k, v in splits.items()) +
              f" (resized in {time.monotonic() - start:.0f} s)", flush=True)
    rows, scores, times = [], {}, []
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        csv.writer(f).writerow(FIELDS)
    stopped = False
    for seed in args.seeds:
        for dataset, splits in data.items():
            for preset in args.presets:
                elapsed = time.monotonic() - start
                if times and elapsed + statistics.mean(times) > args.deadline_s:
                    print(f"deadline: {elapsed:.0f} s + {statistics.mean(times):.0f} s a run > "
                          f"{args.deadline_s:.0f} s; stopping", flush=True)
                    stopped = True
                    break
                print(f"  {dataset} {preset} seed {seed}:", flush=True)
                begin = time.monotonic()
                val_auroc, best_epoch, test_scores = one_run(preset, seed, splits, args, precision)
                times.append(time.monotonic() - begin)
                labels = splits["test"][1]
                row = dict(preset=preset, seed=seed, dataset=dataset, val_auroc=val_auroc,
                           test_auroc=auroc(labels, test_scores), seconds=round(times[-1], 1), best_epoch=best_epoch)
                rows.append(row)
                scores[dataset, preset, seed] = labels, test_scores
                with open(os.path.join(out, "results.csv"), "a", newline="") as f:
                    csv.writer(f).writerow([row[k] for k in FIELDS])
                with open(os.path.join(out, f"scores_{dataset}_{preset}_s{seed}.csv"), "w", newline="") as f:
                    csv.writer(f).writerows([("bag", "label", "score")] +
                                            [(i, int(v), float(s))
                                             for i, (v, s) in enumerate(zip(labels, test_scores))])
                print(f"    test AUROC {row['test_auroc']:.4f} (best epoch {best_epoch}, val {val_auroc:.4f}), "
                      f"{times[-1]:.0f} s", flush=True)
            if stopped:
                break
        if stopped:
            break
    report(rows, scores, list(data), args.presets)


if __name__ == "__main__":
    main()
