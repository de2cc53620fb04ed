"""Slices per second of the training pipeline per file format, against the model's training rate.

For each format the training pipeline (`BagSource` + `make_dataset`, training
mode: instance sampling, resize to 224x224, grayscale to 3 channels,
augmentation) is iterated after a warm-up, and its slices per second are
divided by the slices per second of a `mims` ResNet-50 training step at the
training default precision of this machine (`--precision` to choose; float32 on
a CPU without AMX) on the same input shape (one bag of `--instances` at 224x224).
Target: every ratio >= 5 (the pipeline is never the bottleneck).

Formats (real data from ../shared/data; NIfTI and PNG stacks are the
AdrenalMNIST3D 64^3 volumes written to those formats in a temporary folder):
npz, nifti, png_stack, kather (224x224 JPEG tiles, patient bags).

    python benchmarks/pipeline_throughput.py
    python benchmarks/pipeline_throughput.py --no-model --seconds 5   # pipeline figures only

Ends with one `pipeline_over_model_<format>: R` line per format.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mims_tf.data import BagSource, assign_splits, from_class_folders, from_medmnist, from_rows, make_dataset  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def adrenal_volumes(count):
    manifest = from_medmnist(os.path.join(DATA, "adrenalmnist3d", "adrenalmnist3d_64.npz"))
    bags = manifest.bags("train")[:count]
    source = BagSource(manifest, "train", progress=False)
    return [(source.load(i)[..., 0].astype(np.uint8), bag.label) for i, bag in enumerate(bags)]


def write_nifti(volumes, folder):
    import nibabel

    rows = []
    for i, (volume, label) in enumerate(volumes):
        path = os.path.join(folder, f"volume_{i:03d}.nii.gz")
        nibabel.save(nibabel.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.eye(4)), path)
        rows.append({"path": path, "label": label})
    return from_rows(rows)


def write_png_stacks(volumes, folder):
    from PIL import Image

    rows = []
    for i, (volume, label) in enumerate(volumes):
        stack = os.path.join(folder, f"stack_{i:03d}")
        os.makedirs(stack)
        for s, image in enumerate(volume):
            Image.fromarray(image).save(os.path.join(stack, f"slice_{s:03d}.png"))
        rows.append({"path": stack, "label": label})
    return from_rows(rows)


def manifests(count, folder):
    volumes = adrenal_volumes(count)
    kather = from_class_folders(
        os.path.join(DATA, "kather-crc-msi"), bag_pattern=r"TCGA-\w\w-\w\w\w\w", classes=["MSS_JPEG", "MSIMUT_JPEG"]
    )
    npz = from_medmnist(os.path.join(DATA, "adrenalmnist3d", "adrenalmnist3d_64.npz"))
    return {
        "npz": (npz, "train"),
        "nifti": (write_nifti(volumes, folder), None),
        "png_stack": (write_png_stacks(volumes, folder), None),
        "kather": (assign_splits(kather, seed=0), "train"),
    }


def pipeline_rate(manifest, split, args, cache):
    start = time.perf_counter()
    source = BagSource(manifest, split, cache=cache, progress=False)
    read = time.perf_counter() - start
    dataset = make_dataset(source, True, image_size=(224, 224), instances=args.instances, seed=0).repeat()
    return slices_per_second(iter(dataset), args.seconds, warmup=3), read, len(source)


def slices_per_second(iterator, seconds, warmup):
    """Instances per second an iterator of `(bags, labels)` batches yields over `seconds`, after `warmup` batches."""
    for _ in range(warmup):
        next(iterator)
    slices, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, _ = next(iterator)
        slices += int(x.shape[0] * x.shape[1])
    return slices / (time.perf_counter() - start)


def model_rate(args):
    import keras

    from mims_tf.models import build_model
    from mims_tf.train import paper_optimizer

    keras.config.set_dtype_policy(args.precision)
    model = build_model("mims", backbone="resnet50", weights=None, image_size=(224, 224))
    model.compile(optimizer=paper_optimizer(1e-4), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, size=(1, args.instances, 224, 224, 3)).astype("float32")
    y = np.array([1])
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    times = []
    for _ in range(args.model_steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    keras.config.set_dtype_policy("float32")
    step = float(np.median(times))
    return args.instances / step, step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=16, help="instances per bag and step (default 16)")
    parser.add_argument("--volumes", type=int, default=48, help="volumes written as NIfTI / PNG stacks")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per pipeline")
    parser.add_argument("--model-steps", type=int, default=4)
    parser.add_argument("--no-model", action="store_true", help="skip the model; ratios use 1 slice/s")
    parser.add_argument("--precision", default=None, help="model step precision (default: `mims train`'s here)")
    args = parser.parse_args()
    if args.precision is None:
        from mims_tf.runs.environment import default_precision

        args.precision = default_precision()
    print(f"pipeline_throughput: instances={args.instances} image=224x224 cores={os.cpu_count()}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        rates = {}
        for name, (manifest, split) in manifests(args.volumes, folder).items():
            cached, read, bags = pipeline_rate(manifest, split, args, cache=True)
            streamed, _, _ = pipeline_rate(manifest, split, args, cache=False)
            rates[name] = cached
            print(
                f"  {name}: {bags} bags read and cached in {read:.1f} s; training pipeline "
                f"{cached:.0f} slices/s cached (default), {streamed:.0f} slices/s reading files every step",
                flush=True,
            )
    if args.no_model:
        model, step = 1.0, float("nan")
    else:
        model, step = model_rate(args)
    print(f"  model: mims ResNet-50 {args.precision} training step {step:.2f} s = {model:.2f} slices/s")
    for name, rate in rates.items():
        print(f"pipeline_over_model_{name}: {rate / model:.1f}")


if __name__ == "__main__":
    main()
