"""`mims bench` and `mims analyze`: the commands that make the evidence (the paper's tables, the scale
analysis). Their budget flags are `mims train`'s, from the one table in `flags.py`."""

import os
import sys

from mims_tf.cli.flags import FORMATTER, add_flags, flags_named, given
from mims_tf.models.config import weights_text
from mims_tf.utils import import_keras_quietly, write_text

# The run settings a bench applies to every (preset, seed) run, with the help and parsing of `mims train`.
BUDGET_FLAGS = ("alpha", "image_size", "instances", "central", "epochs", "batch_size", "learning_rate",
                "freeze_backbone", "feature_views", "cache_dir", "deterministic")


def default_data_root():
    """`../shared/data` beside the repository this package runs from (where the bench's datasets live)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "data"))


def bench_parser(sub):
    from mims_tf.bench.tables import DATASETS, TABLES

    p = sub.add_parser(
        "bench", help="every preset of the paper's Table 1 or 2 on a dataset, 3 seeds, one budget; resumable",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims bench table1 --dataset breastmnist --image-size 96 --epochs 10\n"
        "  mims bench table2 --dataset adrenalmnist3d --image-size 28 --epochs 30\n"
        "Run the same command again after an interruption: finished preset/seed results are kept "
        "(--fresh redoes them).\n"
        "The budget flags (--image-size ... --deterministic) are those of `mims train`; where one is not given, the\n"
        "dataset's own setting (e.g. its --instances) applies, then train's default. resnet34_scratch keeps its own\n"
        "backbone, trained from scratch (never frozen).",
    )
    p.add_argument("table", choices=tuple(TABLES))
    p.add_argument("--dataset", required=True, choices=tuple(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: 0 1 2")
    p.add_argument("--presets", nargs="+", default=None, help="a subset of the table's presets")
    add_flags(p, flags_named("backbone", "weights", *BUDGET_FLAGS))
    p.add_argument("--data-root", default=None,
                   help="folder holding the datasets (default: ../shared/data beside the repository)")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"), help="results (default: benchmarks/results)")
    p.add_argument("--work", default=os.path.join("runs", "bench"), help="scratch run folders (default: runs/bench)")
    p.add_argument("--fresh", action="store_true", help="redo finished results")
    p.add_argument("--tag", default=None,
                   help="results folder suffix: <table>_<dataset>_<tag> (default: 'pretrained' with --weights)")
    p.add_argument("--verify", type=int, default=None, metavar="N",
                   help="rerun N finished rows (drawn reproducibly) with the same budget flags and compare each "
                   "with its stored AUROC: identical, within the seed spread, or outside it")
    return p


def run_bench(args):
    import_keras_quietly()
    import shlex

    from mims_tf.bench import bench

    values = given(args, flags_named("backbone", "weights", *BUDGET_FLAGS))
    alpha = values.pop("alpha", None)
    settings = {dest: value for dest, value in values.items() if value is not None}
    if alpha:
        settings["backbone_kwargs"] = {"alpha": alpha}
    if args.verify is not None:
        from mims_tf.bench import verify

        checks = verify(args.table, args.dataset, args.verify, out=args.out, work=args.work,
                        data_root=args.data_root or default_data_root(), tag=args.tag, **settings)
        for c in checks:
            print(f"{c['preset']} seed {c['seed']}: committed {c['committed']:.4f}, rerun {c['rerun']:.4f} "
                  f"({c['difference']:+.4f}; seed spread {c['spread']:.4f}): {c['verdict']}")
            print(f"  committed on {c['committed_environment']}; rerun on {c['environment']}")
        verdicts = [c["verdict"] for c in checks]
        print(f"verified {len(checks)} row(s): " + ", ".join(f"{verdicts.count(v)} {v}" for v in
                                                            ("identical", "within seed spread", "outside seed spread")))
        return 0
    command = " ".join(shlex.quote(a) for a in ["mims", *sys.argv[1:]])
    folder = bench(args.table, args.dataset, out=args.out, work=args.work, seeds=tuple(args.seeds),
                   fresh=args.fresh, data_root=args.data_root or default_data_root(), presets=args.presets,
                   tag=args.tag, command=command, **settings)
    print(f"results: {folder}/table.md, results.csv, table.png")
    return 0


def analyze_parser(sub):
    p = sub.add_parser(
        "analyze", help="analyses; scale-correlation: do backbone features survive resizing? (supplement B)",
        formatter_class=FORMATTER,
        epilog="example:\n  mims analyze scale-correlation --images ../shared/data/kather-crc-msi "
        "--backbone mobilenet \\\n"
        "      --alpha 0.25 --weights ../shared/weights/mobilenet_2_5_224_tf_no_top.h5",
    )
    p.add_argument("analysis", choices=("scale-correlation",))
    p.add_argument("--images", required=True, help="folder of RGB images of one size (searched recursively)")
    p.add_argument("--count", type=int, default=100, help="random images to use (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice (default: 0)")
    p.add_argument("--backbone", default="resnet101", help="backbone (default: resnet101, as in the paper)")
    p.add_argument("--weights", default="imagenet", type=weights_text,
                   help="imagenet, a .h5 path, or none (default: imagenet)")
    p.add_argument("--alpha", type=float, default=None, help="MobileNet width multiplier")
    p.add_argument("--scales", type=float, nargs="+", default=[2.0, 0.75, 0.5], help="default: 2 0.75 0.5")
    p.add_argument("--output", help="also write the table (Markdown) to this file")
    return p


def run_analyze(args):
    import_keras_quietly()
    from mims_tf.explain.scale_correlation import find_images, format_table, scale_correlation

    files = find_images(args.images, args.count, seed=args.seed)
    kwargs = {"alpha": args.alpha} if args.alpha else {}
    table = scale_correlation(files, args.backbone, args.weights, scales=tuple(args.scales), **kwargs)
    title = (f"Pearson correlation of {args.backbone} features (weights: {args.weights}) of {args.count} images "
             f"from {args.images} resized, against the originals")
    text = format_table(table, title)
    print(text)
    if args.output:
        write_text(args.output, text + "\n")
    return 0
