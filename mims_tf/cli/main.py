"""`mims`: train, evaluate and use Multi-Instance Multi-Scale CNNs from the command line.

Every subcommand has --help with examples. Errors in the input (files, options,
config keys) are one line on stderr and exit status 2.
"""

import argparse
import json
import os
import sys
import time

from mims_tf.utils import atomic_path, import_keras_quietly, write_text

# Before TensorFlow is imported (the subcommands import it): hide its C++ info and warning lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXAMPLES = """examples:
  mims demo                                    # the whole pipeline on built-in synthetic data
  mims train --data ../shared/data/adrenalmnist3d/adrenalmnist3d.npz --out runs/adrenal --epochs 20
  mims train --config my.yaml --resume         # continue a stopped run
  mims evaluate runs/adrenal runs/adrenal-seed1 runs/adrenal-seed2
  mims predict runs/adrenal scan1.nii.gz scan2.nii.gz --format json
  mims presets
"""


def _presets(args):
    from mims_tf.models import PRESETS

    width = max(len(name) for name in PRESETS)
    for name, (paper_name, _) in PRESETS.items():
        print(f"{name:<{width}}  {paper_name}")
    return 0


TRAIN_FLAGS = {
    # flag: (type, help)
    "data": (str, "manifest .csv, MedMNIST-style .npz, folder of class folders, or 'synthetic'"),
    "bag_pattern": (str, "regex naming the bag in each file name (class folders), e.g. 'TCGA-\\w\\w-\\w\\w\\w\\w'"),
    "preset": (str, "model preset (see `mims presets`); default mims"),
    "backbone": (str, "backbone: a keras.applications name, resnet34 or tiny; default tiny"),
    "weights": (str, "backbone weights: imagenet or a .h5 path; default none (from scratch)"),
    "kernels": (str, "MSConv kernels: oct, fundus or crc; default oct"),
    "k": (int, "top-k size (default: the preset's; 5 for mims)"),
    "image_size": (int, "instance height and width; default 64"),
    "instances": (int, "instances sampled per bag per training step; default 8"),
    "central": (int, "use only the central N instances of each volume (paper OCT: 30)"),
    "batch_size": (int, "bags per training step; default 4"),
    "epochs": (int, "epochs; default 10"),
    "steps_per_epoch": (int, "training steps per epoch; default one pass over the bags"),
    "learning_rate": (float, "head learning rate (backbone: half); default 1e-3"),
    "seed": (int, "seed for initialisation, data order, sampling, augmentation; default 0"),
    "precision": (str, "float32, mixed_bfloat16 or mixed_float16; default: fp16 on GPU, bf16 on AMX CPUs, else fp32"),
    "strategy": (str, "none, mirrored (one host, all devices) or multi_worker (TF_CONFIG); default none"),
    "checkpoint_steps": (int, "save last.keras every N steps (and every epoch); default 50"),
    "out": (str, "run folder; default runs/mims"),
}


def _train(args):
    from mims_tf.train.config import load_config
    from mims_tf.train.run import train

    overrides = {key: getattr(args, key) for key in TRAIN_FLAGS}
    overrides["backbone_kwargs"] = {"alpha": args.alpha} if args.alpha else None
    if overrides.get("weights") == "none":
        overrides["weights"] = None
    if args.resume:  # the stored config, with --epochs the only change allowed
        out = args.out or load_config(args.config, overrides).out
        stored = os.path.join(out, "config.yaml")
        if not os.path.isfile(stored):
            raise ValueError(f"{out}: no run to resume (no config.yaml)")
        changed = sorted(k for k, v in overrides.items() if v is not None and k not in ("out", "epochs"))
        if changed:
            raise ValueError(f"--resume continues the stored run; only --epochs may change. Received: {', '.join(changed)}")
        config = load_config(stored, {"epochs": args.epochs})
    else:
        config = load_config(args.config, overrides)
    # a progress bar on a terminal, one line per epoch in a log file
    summary = train(config, resume=args.resume, overwrite=args.overwrite, verbose=1 if sys.stdout.isatty() else 2)
    print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args):
    from mims_tf.train.evaluate import evaluate_runs, output_stem

    results, summary = evaluate_runs(args.runs, split=args.split, threshold=args.threshold, instances=args.instances)
    for r in results:
        print(
            f"{r['run']}: {r['split']} AUROC {r['auroc']:.4f}, accuracy {r['accuracy']:.4f}, sensitivity "
            f"{r['sensitivity']:.4f}, specificity {r['specificity']:.4f} at threshold {r['threshold']:.3f} "
            f"({r['threshold_from']}; {r['bags']} bags, instances per bag: {r['instances']})"
        )
        stem = output_stem(r["split"], args.instances)
        print(f"  per-bag CSV {r['run']}/eval_{stem}.csv, ROC curve {r['run']}/roc_{stem}.png")
    if len(results) > 1:
        print(
            f"over {len(results)} runs: "
            + ", ".join(f"{name} {s['mean']:.4f} +- {s['std']:.4f}" for name, s in summary.items())
        )
    return 0


def _predict(args):
    from mims_tf.train.predict import predict

    predict(args.run, args.inputs, manifest_path=args.manifest, out=args.output, fmt=args.format,
            skip_unreadable=args.skip_unreadable)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _analyze(args):
    from mims_tf.explain.scale_correlation import find_images, format_table, scale_correlation

    files = find_images(args.images, args.count, seed=args.seed)
    kwargs = {"alpha": args.alpha} if args.alpha else {}
    weights = None if args.weights == "none" else args.weights
    table = scale_correlation(files, args.backbone, weights, scales=tuple(args.scales), **kwargs)
    title = (f"Pearson correlation of {args.backbone} features (weights: {args.weights}) of {args.count} images "
             f"from {args.images} resized, against the originals")
    text = format_table(table, title)
    print(text)
    if args.output:
        write_text(args.output, text + "\n")
    return 0


def _export(args):
    import shutil

    from mims_tf.export import export_saved_model, export_tflite
    from mims_tf.train.run import load_run, sample_bags

    model, config, manifest = load_run(args.run)
    sample = sample_bags(config, manifest)
    out = args.out or os.path.join(args.run, "export")
    if args.format == "saved_model":
        path = export_saved_model(model, os.path.join(out, "saved_models"), name=args.name, version=args.version,
                                  sample=sample)
        print(f"wrote {path} (TF Serving: --model_base_path={os.path.abspath(os.path.dirname(path))})")
    elif args.format == "tflite":
        os.makedirs(out, exist_ok=True)
        suffix = "" if args.quantize == "none" else f"_{args.quantize}"
        info = export_tflite(model, os.path.join(out, f"{args.name}{suffix}.tflite"), args.quantize, sample=sample[:1])
        print(f"wrote {info['path']} ({info['bytes']:,} bytes; largest difference from Keras {info['max_abs_difference']:.2e})")
    else:
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, f"{args.name}.keras")
        with atomic_path(path) as tmp:
            shutil.copyfile(os.path.join(args.run, "best.keras"), tmp)
        print(f"wrote {path}")
    return 0


def _explain(args):
    from mims_tf.explain.heatmap import explain_bag
    from mims_tf.train.run import eval_batches, load_run, unlabelled_source

    model, config, manifest = load_run(args.run)
    source = unlabelled_source(config, manifest.classes, [{"path": os.path.abspath(args.file)}])
    bag = next(iter(eval_batches(config, source)))[0]
    out = args.out or os.path.join(args.run, "explain", os.path.basename(args.file.rstrip("/")).split(".")[0])
    name = os.path.basename(out)
    written = explain_bag(model, bag.numpy(), out, layer_name=args.layer, class_index=args.class_index,
                          slices=args.slices, name=name)
    for s, score, path in written:
        print(f"slice {s}: contribution {score:.4g} -> {path}")
    print(f"index: {os.path.join(out, 'index.md')}")
    return 0


def _bench(args):
    from mims_tf.train.bench import bench

    settings = {k: v for k, v in {
        "backbone": args.backbone, "weights": None if args.weights in (None, "none") else args.weights,
        "backbone_kwargs": {"alpha": args.alpha} if args.alpha else None, "image_size": args.image_size,
        "instances": args.instances, "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
    }.items() if v is not None}
    folder = bench(args.table, args.dataset, out=args.out, work=args.work, seeds=tuple(args.seeds),
                   fresh=args.fresh, data_root=args.data_root, presets=args.presets, tag=args.tag, **settings)
    print(f"results: {folder}/table.md, results.csv, table.png")
    return 0


def _demo(args):
    from mims_tf.cli.demo import demo

    return demo(args.out, epochs=args.epochs)


def build_parser():
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="mims", description=__doc__, epilog=EXAMPLES, formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train, compare and evaluate two models on built-in synthetic data",
                       epilog="example: mims demo --out runs/demo", formatter_class=formatter)
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=25, help="epochs per model (default: 25)")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "train", help="train a model (config file and/or flags)", formatter_class=formatter,
        epilog="examples:\n  mims train --data ../shared/data/adrenalmnist3d/adrenalmnist3d.npz --out runs/adrenal\n"
        "  mims train --config run.yaml --epochs 30\n  mims train --out runs/adrenal --resume\n\n"
        "A config file is YAML with the same keys as the flags (underscores), e.g.\n"
        "  data: ../shared/data/kather-crc-msi\n  bag_pattern: 'TCGA-\\w\\w-\\w\\w\\w\\w'\n"
        "  classes: [MSS_JPEG, MSIMUT_JPEG]\n  kernels: crc\n  image_size: 224",
    )
    p.add_argument("--config", help="YAML config file; flags override its keys")
    for key, (kind, text) in TRAIN_FLAGS.items():
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind, default=None, help=text)
    p.add_argument("--alpha", type=float, default=None,
                   help="MobileNet width multiplier (config key: backbone_kwargs: {alpha: A})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate", help="bag-level AUROC, accuracy, sensitivity, specificity of one or more runs",
        formatter_class=formatter,
        epilog="examples:\n  mims evaluate runs/adrenal\n  mims evaluate runs/a runs/b runs/c   # mean and spread\n"
        "  mims evaluate runs/adrenal --threshold 0.5 --split val\n"
        "  mims evaluate runs/kather --instances 4   # every bag on 4 sampled tiles: bag size is no signal",
    )
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on P(positive) (default: picked on validation by Youden's J)")
    p.add_argument("--instances", type=int, default=None,
                   help="evaluate every bag on this many of its instances, sampled once with a fixed seed "
                   "(e.g. the training bag size; default: whole bags, as in the paper)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "predict", help="class probabilities for new files or a manifest", formatter_class=formatter,
        epilog="examples:\n  mims predict runs/adrenal scan.nii.gz dicom_folder/\n"
        "  mims predict runs/adrenal --manifest new.csv --format json --output predictions.json",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("inputs", nargs="*", help="files or folders, one bag each")
    p.add_argument("--manifest", help="a manifest CSV instead of files")
    p.add_argument("--format", default="csv", choices=("csv", "json"), help="output format (default: csv)")
    p.add_argument("--output", help="output file (default: standard output)")
    p.add_argument("--skip-unreadable", action="store_true", help="skip unreadable files (reported) instead of failing")
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "analyze", help="analyses; scale-correlation: do backbone features survive resizing? (supplement B)",
        formatter_class=formatter,
        epilog="example:\n  mims analyze scale-correlation --images ../shared/data/kather-crc-msi --backbone mobilenet \\\n"
        "      --alpha 0.25 --weights ../shared/weights/mobilenet_2_5_224_tf_no_top.h5",
    )
    p.add_argument("analysis", choices=("scale-correlation",))
    p.add_argument("--images", required=True, help="folder of RGB images of one size (searched recursively)")
    p.add_argument("--count", type=int, default=100, help="random images to use (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice (default: 0)")
    p.add_argument("--backbone", default="resnet101", help="backbone (default: resnet101, as in the paper)")
    p.add_argument("--weights", default="imagenet", help="imagenet, a .h5 path, or none (default: imagenet)")
    p.add_argument("--alpha", type=float, default=None, help="MobileNet width multiplier")
    p.add_argument("--scales", type=float, nargs="+", default=[2.0, 0.75, 0.5], help="default: 2 0.75 0.5")
    p.add_argument("--output", help="also write the table (Markdown) to this file")
    p.set_defaults(func=_analyze)

    p = sub.add_parser(
        "export", help="export a run's best model: SavedModel (TF Serving), TFLite or .keras",
        formatter_class=formatter,
        epilog="examples:\n  mims export runs/adrenal --format saved_model    # runs/adrenal/export/saved_models/mims/<next version>\n"
        "  mims export runs/adrenal --format tflite --quantize int8\n"
        "  docker run -p 8501:8501 -v $PWD/runs/adrenal/export/saved_models/mims:/models/mims -e MODEL_NAME=mims tensorflow/serving",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--format", default="saved_model", choices=("saved_model", "tflite", "keras"))
    p.add_argument("--out", help="output folder (default: RUN/export)")
    p.add_argument("--name", default="mims", help="model name (default: mims)")
    p.add_argument("--version", type=int, default=None, help="SavedModel version (default: the next free one)")
    p.add_argument("--quantize", default="none", choices=("none", "float16", "int8"),
                   help="TFLite weights: none, float16, or dynamic-range int8 (default: none)")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "explain", help="heatmaps of what drove a decision: slices ranked, overlays, index.md (supplement C)",
        formatter_class=formatter,
        epilog="examples:\n  mims explain runs/adrenal scan.nii.gz\n  mims explain runs/adrenal scan.nii.gz --layer backbone --slices 5",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("file", help="a volume, image or folder (one bag)")
    p.add_argument("--layer", default=None, help="layer whose input is explained (default: backbone, pixel level; head_ms_conv: feature maps)")
    p.add_argument("--class", dest="class_index", type=int, default=1, help="class index to explain (default: 1)")
    p.add_argument("--slices", type=int, default=3, help="overlays for the top N slices (default: 3)")
    p.add_argument("--out", help="output folder (default: RUN/explain/<file name>)")
    p.set_defaults(func=_explain)

    p = sub.add_parser(
        "bench", help="every preset of the paper's Table 1 or 2 on a dataset, 3 seeds, one budget; resumable",
        formatter_class=formatter,
        epilog="examples:\n  mims bench table1 --dataset breastmnist --image-size 96 --epochs 10\n"
        "  mims bench table2 --dataset adrenalmnist3d --image-size 28 --epochs 30\n"
        "Run the same command again after an interruption: finished preset/seed results are kept (--fresh redoes them).",
    )
    p.add_argument("table", choices=("table1", "table2"))
    p.add_argument("--dataset", required=True, choices=("adrenalmnist3d", "kather-crc-msi", "breastmnist", "pneumoniamnist"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--presets", nargs="+", default=None, help="a subset of the table's presets")
    p.add_argument("--backbone", default=None, help="backbone of every preset but resnet34_scratch (default: tiny)")
    p.add_argument("--weights", default=None, help="imagenet, a .h5 path or none (default: none)")
    p.add_argument("--alpha", type=float, default=None, help="MobileNet width multiplier")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--instances", type=int, default=None, help="instances sampled per bag in training (default: the dataset's)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--data-root", default=None, help="folder holding the datasets (default: ../shared/data)")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"), help="results (default: benchmarks/results)")
    p.add_argument("--work", default=os.path.join("runs", "bench"), help="scratch run folders (default: runs/bench)")
    p.add_argument("--fresh", action="store_true", help="redo finished results")
    p.add_argument("--tag", default=None,
                   help="results folder suffix: <table>_<dataset>_<tag> (default: 'pretrained' with --weights)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("presets", help="list the model presets (the paper's Table 1 and 2 rows)")
    p.set_defaults(func=_presets)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    import_keras_quietly()
    from mims_tf.data import DataError

    start = time.perf_counter()
    try:
        status = args.func(args)
    except (ValueError, DataError, RuntimeError, ImportError, OSError) as error:  # bad input: one line, no traceback
        print(f"mims {args.command}: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mims {args.command}: interrupted", file=sys.stderr)
        return 130
    if args.command in ("train", "demo"):
        print(f"mims {args.command}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
