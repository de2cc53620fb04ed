"""The input pipeline at the paper's data set sizes: peak memory and slices per second, whatever the size.

Writes synthetic OCT volumes at Cirrus geometry (128 x 512 x 1024 uint8, 64 MiB each; `--gb` in all,
default 30: more than this machine's memory) as `.npy` files, and `--images` large 2D images (900 x 600
x 3 JPEG, fundus size) into `--folder` (default: a temporary folder, deleted at the end). Then, each in
a fresh process, for each way `BagSource` can keep bags (`auto`, which picks memory here since the
bags are kept cropped to the 30 central slices and resized to 224 x 224; `disk`, a cache folder;
`none`, the files read at every step): the training pipeline of the paper's OCT setting (30 central
slices, 12 to 18 a step, 224 px, augmentation) reads the set as that mode does and is then iterated
for `--seconds`. Reported per mode: the peak resident memory of that process (VmHWM, TensorFlow's own
included), the time of the up-front pass, and slices per second. The model's rate is a `mims` ResNet-50
training step at 224 px on 16 slices (as `pipeline_throughput.py`). The cost curve runs `auto` and
`none` on 10 %, 30 % and 100 % of the volumes.

    python benchmarks/scale.py                          # 30 GB; about 15 minutes on 2 cores
    python benchmarks/scale.py --gb 2 --images 100 --seconds 5 --no-model   # a quick check

Ends with `peak_memory_gb_<mode>` and `pipeline_over_model_<mode>` per mode (targets: under 4 GB, at
least 5), the 2D set as `..._images`, and the cost curve as `curve_<mode>_<percent>_{seconds,gb}`.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline_throughput import model_rate as pipeline_model_rate, slices_per_second  # noqa: E402  (benchmarks/)

CIRRUS = (128, 512, 1024)


def peak_memory_gb():
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def write_volumes(folder, gb):
    import numpy as np

    count = max(1, round(gb * 1e9 / np.prod(CIRRUS)))
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=CIRRUS, dtype=np.uint8)
    for index in range(count):
        base[:2] = (np.arange(2 * 512 * 1024, dtype=np.uint32).reshape(2, 512, 1024)
                    * (index + 7) % 251).astype(np.uint8)
        np.save(os.path.join(folder, f"vol{index:05d}.npy"), base)  # each volume its own first slices (cache keys)
    return count


def write_images(folder, count):
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, size=(600, 900, 3), dtype=np.uint8)
    for index in range(count):
        base[:8] = index % 256
        Image.fromarray(base).save(os.path.join(folder, f"img{index:05d}.jpg"), quality=90)


def child(args):
    """One mode, in this (fresh) process: read the set as the mode does, then iterate the training pipeline."""
    import tensorflow  # noqa: F401  (its start-up is not part of the up-front pass)

    from mims_tf.data import BagSource, from_rows, make_dataset

    files = sorted(glob.glob(os.path.join(args.data, "*")))
    files = files[: max(1, round(len(files) * args.fraction))]
    rows = [{"path": path, "label": i % 2, "split": "train"} for i, path in enumerate(files)]
    volumes = files[0].endswith(".npy")
    start = time.perf_counter()
    source = BagSource(from_rows(rows), "train", central=30 if volumes else None, image_size=(224, 224),
                       cache=args.mode, cache_dir=args.cache_dir, progress=False)
    read = time.perf_counter() - start
    instances = (12, 18) if volumes else 1
    iterator = iter(make_dataset(source, True, image_size=(224, 224), instances=instances, seed=0, repeat=True))
    rate = slices_per_second(iterator, args.seconds, warmup=2)
    return {"mode": source.mode, "reason": source.reason, "bags": len(source), "read_s": read,
            "slices_per_s": rate, "peak_gb": peak_memory_gb()}


def run_child(args, data, mode, fraction=1.0, cache_dir=None):
    command = [sys.executable, HERE, "--child", mode, "--data", data, "--fraction", str(fraction),
               "--seconds", str(args.seconds)] + (["--cache-dir", cache_dir] if cache_dir else [])
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def model_rate(args):
    from mims_tf.runs.environment import default_precision

    return pipeline_model_rate(argparse.Namespace(precision=default_precision(), instances=16,
                                                  model_steps=args.model_steps))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=30.0, help="gigabytes of Cirrus-size volumes to write")
    parser.add_argument("--images", type=int, default=2000, help="900 x 600 JPEG images to write")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds of each pipeline")
    parser.add_argument("--folder", help="where to write the set (default: a temporary folder, deleted)")
    parser.add_argument("--model-steps", type=int, default=3)
    parser.add_argument("--no-model", action="store_true", help="skip the model; ratios use 1 slice/s")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        print(json.dumps(child(args)), flush=True)
        return

    folder = args.folder or tempfile.mkdtemp(prefix="mims-scale-")
    try:
        start = time.perf_counter()
        count = write_volumes(os.path.join(folder, "volumes"), args.gb)
        write_images(os.path.join(folder, "images"), args.images)
        total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(folder, "*", "*"))) / 1e9
        print(f"scale: {count} volumes of {'x'.join(map(str, CIRRUS))} uint8 and {args.images} images of 900x600x3 "
              f"JPEG, {total:.1f} GB on disk, written in {time.perf_counter() - start:.0f} s; memory "
              f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 1e9:.1f} GB; cores {os.cpu_count()}",
              flush=True)
        volumes, images = os.path.join(folder, "volumes"), os.path.join(folder, "images")
        results = {}
        for mode in ("auto", "disk", "none"):
            results[mode] = run_child(args, volumes, mode,
                                      cache_dir=os.path.join(folder, "cache") if mode == "disk" else None)
        results["images"] = run_child(args, images, "auto")
        for name, r in results.items():
            print(f"  {name}: kept {r['mode']} ({r['reason']}); {r['bags']} bags read up front in {r['read_s']:.0f} s; "
                  f"{r['slices_per_s']:.0f} slices/s; peak memory {r['peak_gb']:.2f} GB", flush=True)
        curve = {}
        for mode in ("auto", "none"):
            for fraction in (0.1, 0.3):
                curve[mode, fraction] = run_child(args, volumes, mode, fraction)
            curve[mode, 1.0] = results[mode]
            print(f"  cost curve {mode}: " + "; ".join(
                f"{int(f * 100)} %: {curve[mode, f]['read_s']:.0f} s, {curve[mode, f]['peak_gb']:.2f} GB"
                for f in (0.1, 0.3, 1.0)), flush=True)
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)
    model, step = (1.0, float("nan")) if args.no_model else model_rate(args)
    print(f"  model: mims ResNet-50 training step on 16 slices at 224 px: {step:.2f} s = {model:.2f} slices/s",
          flush=True)
    for name, r in results.items():
        print(f"peak_memory_gb_{name}: {r['peak_gb']:.2f}")
        print(f"pipeline_over_model_{name}: {r['slices_per_s'] / model:.1f}")
    for (mode, fraction), r in curve.items():
        print(f"curve_{mode}_{int(fraction * 100)}_seconds: {r['read_s']:.1f}")
        print(f"curve_{mode}_{int(fraction * 100)}_gb: {r['peak_gb']:.2f}")


if __name__ == "__main__":
    main()
