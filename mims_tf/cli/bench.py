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


DATA_ROOT_VARIABLE = "MIMS_DATA_ROOT"


def default_data_root(environ=None, package=None, cwd=None):
    """The data root where --data-root is not given: $MIMS_DATA_ROOT; else `../shared/data` beside the checkout
    of this repository (the one this package runs from, a source tree or an editable install, or else the working
    folder), where that folder exists; else None. An installed package (site-packages) has no checkout beside it.
    """
    environ = os.environ if environ is None else environ
    if environ.get(DATA_ROOT_VARIABLE):
        return environ[DATA_ROOT_VARIABLE]
    package = package or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../mims_tf
    for checkout in (os.path.dirname(package), os.path.abspath(cwd or os.getcwd())):
        if os.path.isfile(os.path.join(checkout, "pyproject.toml")) and os.path.isdir(os.path.join(checkout,
                                                                                                   "mims_tf")):
            root = os.path.normpath(os.path.join(checkout, "..", "shared", "data"))
            if os.path.isdir(root):
                return root
    return None


def checked_data_root(data_root, dataset):
    """The data root (--data-root, else `default_data_root`), checked to hold `dataset`: one line otherwise."""
    from mims_tf.bench.tables import DATASETS

    root = data_root or default_data_root()
    hint = f"give --data-root or set {DATA_ROOT_VARIABLE}"
    if root is None:
        raise ValueError(f"no data root: data set {dataset} is looked for as <root>/{DATASETS[dataset][0]}; {hint}")
    expected = os.path.join(root, DATASETS[dataset][0])
    if not os.path.exists(expected):
        raise ValueError(f"{root}: data set {dataset} not found (expected {expected}); {hint}")
    return root


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
                   help=f"folder holding the datasets (default: ${DATA_ROOT_VARIABLE}, else ../shared/data beside "
                   "the repository checkout, where it exists)")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"), help="results (default: benchmarks/results)")
    p.add_argument("--work", default=os.path.join("runs", "bench"), help="scratch run folders (default: runs/bench)")
    p.add_argument("--fresh", action="store_true", help="redo finished results")
    p.add_argument("--tag", default=None,
                   help="results folder suffix: <table>_<dataset>_<tag> (default: 'pretrained' with --weights)")
    p.add_argument("--verify", type=int, default=None, metavar="N",
                   help="rerun N finished rows (drawn reproducibly) with the settings recorded with them and compare "
                   "each with its stored AUROC: identical, within the seed spread, or outside it (budget flags: "
                   "only --cache-dir, and --weights to find the recorded file elsewhere)")
    return p


def run_bench(args):
    data_root = checked_data_root(args.data_root, args.dataset)  # before anything runs
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
                        data_root=data_root, tag=args.tag, **settings)
        for c in checks:
            print(f"{c['preset']} seed {c['seed']}: committed {c['committed']:.4f}, rerun {c['rerun']:.4f} "
                  f"({c['difference']:+.4f}; seed spread {c['spread']:.4f}): {c['verdict']}")
            print(f"  committed on {c['committed_environment']}; rerun on {c['environment']}")
        if checks:
            print(f"rerun with the settings recorded with the results: {checks[0]['settings']}")
        verdicts = [c["verdict"] for c in checks]
        print(f"verified {len(checks)} row(s): " + ", ".join(f"{verdicts.count(v)} {v}" for v in
                                                            ("identical", "within seed spread", "outside seed spread")))
        return 0
    from mims_tf.cli.train import check_imagenet_weights

    image_size = settings.get("image_size")
    check_imagenet_weights(settings.get("backbone"), settings.get("weights"),
                           (image_size, image_size) if isinstance(image_size, int) else image_size,
                           settings.get("backbone_kwargs"))
    command = " ".join(shlex.quote(a) for a in ["mims", *sys.argv[1:]])
    folder = bench(args.table, args.dataset, out=args.out, work=args.work, seeds=tuple(args.seeds),
                   fresh=args.fresh, data_root=data_root, presets=args.presets,
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
