"""`mims predict`: class probabilities for new files or a manifest."""

import sys

from mims_tf.cli.flags import FORMATTER, add_decision_flag
from mims_tf.utils import import_keras_quietly


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
    add_decision_flag(p)
    bags = p.add_mutually_exclusive_group()
    bags.add_argument("--each", action="store_true", default=None,
                      help="each file of a folder given is its own bag (default: a folder is one bag where the model "
                           "was trained on bags of several images; for a model of single images, say which)")
    bags.add_argument("--folder-as-bag", dest="each", action="store_false", default=None,
                      help="each folder given is one bag (its files the instances)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a bag unlike the model's training bags (the input contract) instead of warning")
    p.add_argument("--json", action="store_true", help="the same as --format json (standard output holds only the "
                   "predictions, in any format; messages go to standard error)")
    return p


def run_predict(args):
    from mims_tf.runs.folder import RunFolder

    RunFolder(args.run).check(which=None)  # before TensorFlow starts
    import_keras_quietly()
    from mims_tf.runs.predict import predict, write_predictions

    if bool(args.inputs) == bool(args.manifest):
        raise ValueError("give either input files or --manifest")
    if args.json:
        args.format = "json"
    results = predict(args.run, args.inputs, manifest_path=args.manifest, out=args.output, fmt=args.format,
                      skip_unreadable=args.skip_unreadable, which=args.which, decision=args.decision,
                      each=args.each, strict=args.strict)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        classes = list(results[0]["probabilities"]) if results else []
        write_predictions(results, classes, sys.stdout, args.format)
    return 0
