"""`mims`: train, evaluate and use Multi-Instance Multi-Scale CNNs from the command line.

Every subcommand has --help with examples. Errors in the input (files, options,
config keys) are one line on stderr and exit status 2, and options are checked
before TensorFlow starts (a typo is answered in well under a second).

This module is over 400 lines because each command keeps its parser and its run
function side by side (one small pair per command, in `COMMANDS`), so a command
reads in one place; the flag table of `mims train` is in `flags.py`.
"""

import argparse
import json
import logging
import os
import sys
import time

from mims_tf.cli.bench import analyze_parser, bench_parser, run_analyze, run_bench
from mims_tf.cli.flags import FORMATTER, add_flags, build_overrides, train_flags
from mims_tf.utils import import_keras_quietly, write_text

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


# --- one parser function and one run function per command -----------------------------------------------

def _expand_runs(paths):
    """Run folders, a folder of run folders standing for the runs inside it (sorted)."""
    from mims_tf.runs.folder import RunFolder

    runs = []
    for path in paths:
        inside = sorted(os.path.join(path, n) for n in os.listdir(path)) if os.path.isdir(path) else []
        inside = [p for p in inside if RunFolder(p).exists()]
        runs += inside if not RunFolder(path).exists() and inside else [path]
    return runs


def _check_runs(paths):
    """Fails at once (before TensorFlow starts) for a path that is not a run folder."""
    from mims_tf.runs.folder import RunFolder

    for path in paths:
        RunFolder(path).check(which=None)


def demo_parser(sub):
    p = sub.add_parser("demo", help="train, compare and evaluate two models on built-in synthetic data",
                       epilog="example: mims demo --out runs/demo", formatter_class=FORMATTER)
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=25, help="epochs per model (default: 25)")
    return p


def run_demo(args):
    import_keras_quietly()
    from mims_tf.cli.demo import demo

    return demo(args.out, epochs=args.epochs)


def train_parser(sub):
    p = sub.add_parser(
        "train", help="train a model (config file and/or flags)", formatter_class=FORMATTER,
        epilog="examples:\n  mims train --data ../shared/data/adrenalmnist3d/adrenalmnist3d.npz --out runs/adrenal\n"
        "  mims train --config run.yaml --epochs 30\n  mims train --out runs/adrenal --resume\n\n"
        "A config file is YAML with a model, a data and a training block, e.g.\n"
        "  model: {preset: mims, backbone: mobilenet, weights: imagenet, kernels: crc}\n"
        "  data: {source: ../shared/data/kather-crc-msi, bag_pattern: 'TCGA-\\w\\w-\\w\\w\\w\\w',\n"
        "         classes: [MSS_JPEG, MSIMUT_JPEG], image_size: [224, 224]}\n"
        "  training: {epochs: 20, learning_rate: 0.0001}\n"
        "Flags override its keys; a run folder's config.yaml has every key.",
    )
    p.add_argument("--config", help="YAML config file; flags override its keys")
    add_flags(p, train_flags())
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    return p


def run_train(args):
    from mims_tf.runs.config import load_config
    from mims_tf.runs.folder import RunFolder

    overrides = build_overrides(args, train_flags())
    if args.resume:  # the stored config, with --epochs the only change allowed
        out = args.out or load_config(args.config, overrides).out
        if not RunFolder(out).exists():
            raise ValueError(f"{out}: no run to resume (no config.yaml)")
        changed = sorted(flag for flag, value in vars(args).items()
                         if value is not None and flag in {f.dest for f in train_flags()} - {"out", "epochs"})
        if changed:
            raise ValueError(f"--resume continues the stored run; only --epochs may change. Received: {', '.join(changed)}")
        config = load_config(RunFolder(out).config_path, {"epochs": args.epochs})
        config.out = out  # the folder named now, not the path stored when the run began
    else:
        config = load_config(args.config, overrides)
    source = config.data.source
    if source != "synthetic" and not os.path.exists(source):
        raise ValueError(f"{source}: data not found (--data)")
    if config.deterministic:  # oneDNN's kernels can only be turned off before TensorFlow starts
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    import_keras_quietly()  # after the options and config are checked: a typo is answered at once
    from mims_tf.runs.fit import train

    # a progress bar on a terminal, one line per epoch in a log file
    summary = train(config, resume=args.resume, overwrite=args.overwrite, verbose=1 if sys.stdout.isatty() else 2)
    print(json.dumps(summary, indent=2))
    return 0


def evaluate_parser(sub):
    p = sub.add_parser(
        "evaluate", help="bag-level AUROC (95 %% CI), accuracy, sensitivity, specificity, calibration of runs",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims evaluate runs/adrenal\n  mims evaluate runs/a runs/b runs/c   # mean and spread per preset\n"
        "  mims evaluate runs/a runs/b            # two runs on the same bags: paired CI of the AUROC difference\n"
        "  mims evaluate runs/adrenal --sensitivity 0.95   # store a threshold reaching 95 % sensitivity on validation\n"
        "  mims evaluate runs/kather --instances 4   # every bag on 4 sampled tiles: bag size is no signal",
    )
    p.add_argument("runs", nargs="+", help="run folders, or a folder of run folders")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--model", dest="which", default="best", choices=("best", "last"),
                   help="the best epoch's model (by validation AUROC, ties by loss) or the last (default: best)")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on the calibrated P(positive) (default: the run's, chosen on validation); "
                        "the files then end in _at<threshold> (eval_test_at0.9.csv), beside the run's own")
    p.add_argument("--sensitivity", type=float, default=None,
                   help="choose and store the run's threshold as the highest reaching this validation sensitivity")
    p.add_argument("--instances", type=int, default=None,
                   help="evaluate every bag on this many of its instances, sampled once with a fixed seed "
                   "(e.g. the training bag size; default: whole bags, as in the paper)")
    return p


def run_evaluate(args):
    args.runs = _expand_runs(args.runs)  # `mims evaluate runs/demo`: every run inside
    _check_runs(args.runs)
    import_keras_quietly()
    from mims_tf.runs.evaluate import compare_runs, evaluate_runs, output_stem

    results, groups = evaluate_runs(args.runs, split=args.split, threshold=args.threshold, instances=args.instances,
                                    which=args.which, sensitivity=args.sensitivity)
    for r in results:
        print(
            f"{r['run']} ({r['preset']}, {r['model']} model): {r['split']} AUROC {r['auroc']:.4f} "
            f"(95 % CI {r['auroc_low']:.3f}-{r['auroc_high']:.3f}, {r['bags']} bags); at threshold {r['threshold']:.3f} "
            f"({r['threshold_from']}): accuracy {r['accuracy']:.4f}, sensitivity {r['sensitivity']:.4f}, "
            f"specificity {r['specificity']:.4f}"
        )
        print(f"  calibration ({r['calibration']}, fitted on validation): ECE {r['ece']:.4f} -> {r['ece_calibrated']:.4f}, "
              f"Brier {r['brier']:.4f} -> {r['brier_calibrated']:.4f}; instances per bag: {r['instances']}")
        if not r["threshold_reliable"]:
            print(f"  warning: the threshold is unreliable: {r['threshold_warning']}")
        stem = output_stem(r["split"], args.instances, args.which, args.threshold)
        print(f"  per-bag CSV {r['run']}/eval_{stem}.csv, ROC {r['run']}/roc_{stem}.png, "
              f"reliability {r['run']}/reliability_{stem}.png")
    for (preset, data), summary in groups.items():
        n = summary["auroc"]["n"]
        if n > 1:
            print(f"{preset} over {n} runs on {data}: "
                  + ", ".join(f"{name} {s['mean']:.4f} +- {s['std']:.4f}" for name, s in summary.items()))
    if len(results) == 2 and results[0]["bag_ids"] == results[1]["bag_ids"]:
        difference, low, high = compare_runs(*results)
        print(f"AUROC {results[0]['run']} - {results[1]['run']}: {difference:+.4f} "
              f"(paired bootstrap 95 % CI {low:+.4f} to {high:+.4f}, {results[0]['bags']} bags)")
    return 0


def predict_parser(sub):
    p = sub.add_parser(
        "predict", help="class probabilities for new files or a manifest", formatter_class=FORMATTER,
        epilog="examples:\n  mims predict runs/adrenal scan.nii.gz dicom_folder/\n"
        "  mims predict runs/adrenal --manifest new.csv --format json --output predictions.json",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("inputs", nargs="*", help="files or folders, one bag each")
    p.add_argument("--manifest", help="a manifest CSV instead of files")
    p.add_argument("--format", default="csv", choices=("csv", "json"), help="output format (default: csv)")
    p.add_argument("--output", help="output file (default: standard output)")
    p.add_argument("--skip-unreadable", action="store_true", help="skip unreadable files (reported) instead of failing")
    p.add_argument("--model", dest="which", default="best", choices=("best", "last"), help="default: best")
    return p


def run_predict(args):
    _check_runs([args.run])
    import_keras_quietly()
    from mims_tf.runs.predict import predict, write_predictions

    if bool(args.inputs) == bool(args.manifest):
        raise ValueError("give either input files or --manifest")
    results = predict(args.run, args.inputs, manifest_path=args.manifest, out=args.output, fmt=args.format,
                      skip_unreadable=args.skip_unreadable, which=args.which)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        classes = list(results[0]["probabilities"]) if results else []
        write_predictions(results, classes, sys.stdout, args.format)
    return 0


def export_parser(sub):
    p = sub.add_parser(
        "export", help="export a run's best model: SavedModel (TF Serving), TFLite or .keras",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims export runs/adrenal              # saved_models/<preset>/<next version>/\n"
        "  mims export runs/adrenal --format tflite --quantize int8   # runs/adrenal/export/<preset>_int8.tflite\n"
        "  docker run -p 8501:8501 -v $PWD/saved_models/mims:/models/mims -e MODEL_NAME=mims tensorflow/serving",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--format", default="saved_model", choices=("saved_model", "tflite", "keras"),
                   help="default: saved_model")
    p.add_argument("--out", help="output folder (default: saved_models/ in the working directory for a "
                   "SavedModel, TF Serving's model base path's parent; RUN/export for the others)")
    p.add_argument("--name", default=None, help="model name (default: the run's preset)")
    p.add_argument("--version", type=int, default=None, help="SavedModel version (default: the next free one)")
    p.add_argument("--quantize", default="none", choices=("none", "float16", "int8"),
                   help="TFLite weights: none, float16, or dynamic-range int8 (default: none)")
    return p


def run_export(args):
    _check_runs([args.run])
    import_keras_quietly()
    from mims_tf.runs.export import export_run

    info = export_run(args.run, args.format, out=args.out, name=args.name, version=args.version,
                      quantize=args.quantize)
    if args.format == "saved_model":
        print(f"wrote {info['path']} (TF Serving: --model_base_path={os.path.abspath(os.path.dirname(info['path']))})")
    elif args.format == "tflite":
        print(f"wrote {info['path']} ({info['bytes']:,} bytes; largest difference from Keras "
              f"{info['max_abs_difference']:.2e})")
    else:
        print(f"wrote {info['path']}")
    return 0


def explain_parser(sub):
    p = sub.add_parser(
        "explain", help="heatmaps of what drove a decision: slices ranked, overlays, index.md and a contact sheet "
        "index.png (supplement C)",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims explain runs/adrenal scan.nii.gz\n  mims explain runs/adrenal scan.nii.gz --layer backbone --slices 5"
               "\n  mims explain runs/adrenal scan.nii.gz --method gradient_x_input   # 16x cheaper",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("file", help="a volume, image or folder (one bag)")
    p.add_argument("--layer", default=None,
                   help="layer whose input is explained (default: backbone, pixel level; head_ms_conv: feature maps)")
    p.add_argument("--method", default=None, choices=("smoothgrad", "gradient_x_input"),
                   help="smoothgrad: gradient x input averaged over 16 noisy copies (default; chosen on real and "
                        "synthetic images, benchmarks/results/heatmaps/); gradient_x_input: one pass, 16x cheaper")
    p.add_argument("--class", dest="class_index", type=int, default=1, help="class index to explain (default: 1)")
    p.add_argument("--slices", type=int, default=3, help="overlays for the top N slices (default: 3)")
    p.add_argument("--out", help="output folder (default: RUN/explain/<file name>)")
    return p


def run_explain(args):
    _check_runs([args.run])
    import_keras_quietly()
    from mims_tf.runs.explain import explain_file

    out, written, _ = explain_file(args.run, args.file, out=args.out, layer_name=args.layer,
                                class_index=args.class_index, slices=args.slices, method=args.method)
    for s, score, path in written:
        print(f"slice {s}: contribution {score:.4g} -> {path}")
    print(f"index: {os.path.join(out, 'index.md')}")
    print(f"contact sheet: {os.path.join(out, 'index.png')}")
    return 0


def presets_parser(sub):
    return sub.add_parser("presets", help="list the model presets (the paper's Table 1 and 2 rows)")


def run_presets(args):
    from mims_tf.models.config import PRESETS

    width = max(len(name) for name in PRESETS)
    for name, preset in PRESETS.items():
        tables = ", ".join(preset["metadata"]["tables"]) or "-"
        print(f"{name:<{width}}  {preset['metadata']['paper_name']}  ({tables})")
    return 0


COMMANDS = {
    "demo": (demo_parser, run_demo),
    "train": (train_parser, run_train),
    "evaluate": (evaluate_parser, run_evaluate),
    "predict": (predict_parser, run_predict),
    "analyze": (analyze_parser, run_analyze),
    "export": (export_parser, run_export),
    "explain": (explain_parser, run_explain),
    "bench": (bench_parser, run_bench),
    "presets": (presets_parser, run_presets),
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`mims train: error: ...`) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = Parser(prog="mims", description=__doc__.split("\n\nThis module")[0], epilog=EXAMPLES, formatter_class=FORMATTER)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for make_parser, run in COMMANDS.values():
        make_parser(sub).set_defaults(func=run)
    return parser


def _unknown_flags(parser, args, extras):
    """One line for flags the command does not know, with the nearest known flag."""
    from mims_tf.utils import did_you_mean

    command = parser._subparsers._group_actions[0].choices[args.command]
    known = [option for option in command._option_string_actions if option.startswith("--") and option != "--help"]
    flags = [e.split("=")[0] for e in extras if e.startswith("-")]
    hints = ""
    if flags:
        # `--lr` -> `--learning-rate`: the initials of a known flag first, then the closest spelling
        initials = [o for o in known if "".join(w[0] for w in o[2:].split("-")) == flags[0].lstrip("-")]
        hints = f" Did you mean {initials[0]!r}?" if initials else did_you_mean(flags[0], known)
    shown = " ".join(flags or extras)
    return f"mims {args.command}: error: unrecognized argument(s): {shown}.{hints} (see mims {args.command} --help)"


def _runtime_errors():
    """TensorFlow's own errors (e.g. an op that fails on a bag at run time), where TensorFlow is loaded."""
    tf = sys.modules.get("tensorflow")
    return (tf.errors.OpError,) if tf is not None and hasattr(tf, "errors") else ()


class ProgressHandler(logging.StreamHandler):
    """Log lines as they come; progress records (`mims_tf.utils.Progress`) as one bar redrawn in place on a
    terminal, and only their final line where the stream is not a terminal (a log file, a pipe)."""

    WIDTH = 24

    def __init__(self, stream):
        super().__init__(stream)
        self.terminal = hasattr(stream, "isatty") and stream.isatty()
        self.drawn = False  # a bar is on the current line

    def emit(self, record):
        progress = getattr(record, "progress", None)
        if progress is None or not self.terminal:
            if progress is not None and progress[1] < progress[2]:
                return  # not a terminal: no bars, only the final line
            self._end_bar()
            super().emit(record)
            return
        label, done, total = progress
        filled = int(self.WIDTH * done / total) if total else self.WIDTH
        rest = record.getMessage()[len(label) + 2:]
        self.stream.write(f"\r{label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {rest}\033[K")
        self.drawn = done < total
        if not self.drawn:
            self.stream.write("\n")
        self.flush()

    def _end_bar(self):
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False


def main(argv=None):
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        print(_unknown_flags(parser, args, extras), file=sys.stderr)
        return 2
    from mims_tf.data.errors import DataError

    handler = ProgressHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("mims_tf")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        status = args.func(args)
    except (ValueError, DataError, RuntimeError, ImportError, OSError, *_runtime_errors()) as error:  # one line
        print(f"mims {args.command}: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mims {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
    if args.command in ("train", "demo"):
        print(f"mims {args.command}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
