"""`mims`: the command line of mims-tf.

Subcommands so far: `presets` (the paper's models) and `smoke` (a short
end-to-end run of one preset on generated bags). `train`, `evaluate`,
`predict`, `demo`, `export` and `explain` follow (see DESIGN.md section 6).
"""

import argparse
import os
import sys
import tempfile
import time

# Before TensorFlow is imported (the subcommands import it): hide its C++ info and warning lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_keras_quietly():
    """Imports Keras (and TensorFlow) with file descriptor 2 muted.

    TensorFlow 2.21 prints absl/oneDNN/CUDA lines at import whatever
    TF_CPP_MIN_LOG_LEVEL says. Set MIMS_VERBOSE=1 to see them.
    """
    if os.environ.get("MIMS_VERBOSE") == "1":
        import keras  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

EXAMPLES = """examples:
  mims presets
  mims smoke
  mims smoke --preset pyramid_mims --steps 5 --out runs/smoke
"""


def _presets(args):
    from mims_tf.models import PRESETS

    width = max(len(name) for name in PRESETS)
    for name, (paper_name, _) in PRESETS.items():
        print(f"{name:<{width}}  {paper_name}")
    return 0


def _planted_bags(rng, count, instances, size):
    """Noise bags; positive bags hold a bright square in one random instance."""
    bags = rng.normal(100, 20, size=(count, instances, size, size, 3)).clip(0, 255).astype("float32")
    labels = rng.integers(0, 2, size=count)
    for bag, label in zip(bags, labels):
        if label:
            i, y, x = rng.integers(0, instances), *rng.integers(0, size - size // 4, size=2)
            bag[i, y : y + size // 4, x : x + size // 4] = 250.0
    return bags, labels


def _smoke(args):
    import keras
    import numpy as np

    from mims_tf.models import build_model
    from mims_tf.train import paper_optimizer

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    size = args.image_size
    model = build_model(args.preset, backbone=args.backbone, weights=None, image_size=(size, size))
    model.compile(optimizer=paper_optimizer(args.learning_rate), loss="sparse_categorical_crossentropy")
    print(f"built {args.preset} on {args.backbone}: {model.count_params():,} parameters")
    rng = np.random.default_rng(args.seed)
    bags, labels = _planted_bags(rng, 8, args.instances, size)
    for step in range(1, args.steps + 1):
        loss = model.train_on_batch(bags, labels)
        print(f"step {step}/{args.steps}: loss {float(loss):.4f}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.preset}.keras")
    with tempfile.NamedTemporaryFile(dir=args.out, suffix=".keras", delete=False) as tmp:
        tmp_path = tmp.name
    model.save(tmp_path)
    os.replace(tmp_path, path)  # atomic: a reader never sees half a file
    reloaded = keras.saving.load_model(path, safe_mode=True)
    same = np.array_equal(model.predict(bags, verbose=0), reloaded.predict(bags, verbose=0))
    print(f"saved {path}; reloaded with safe_mode=True, identical outputs: {same}")
    print(f"smoke run finished in {time.perf_counter() - start:.1f} s")
    return 0 if same else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mims", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("presets", help="list the model presets (the paper's Table 1 and 2 rows)")
    p.set_defaults(func=_presets)
    p = sub.add_parser(
        "smoke",
        help="train a preset for a few steps on generated bags, save and reload it",
        epilog="example: mims smoke --preset mims --steps 3",
    )
    p.add_argument("--preset", default="mims", help="model preset (see `mims presets`; default: mims)")
    p.add_argument("--backbone", default="tiny", help="backbone (default: tiny, a 3-layer test net)")
    p.add_argument("--image-size", type=int, default=32, help="image height and width (default: 32)")
    p.add_argument("--instances", type=int, default=4, help="instances per bag (default: 4)")
    p.add_argument("--steps", type=int, default=3, help="training steps (default: 3)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="head learning rate (default: 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default=os.path.join("runs", "smoke"), help="output folder (default: runs/smoke)")
    p.set_defaults(func=_smoke)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    _import_keras_quietly()
    try:
        return args.func(args)
    except ValueError as error:  # bad options: one line, no traceback
        print(f"mims {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
