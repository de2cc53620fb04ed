"""`mims export`: a run's model as a SavedModel (TF Serving), TFLite or .keras; `--check`: is an export current."""

import os

from mims_tf.cli.flags import FORMATTER, add_decision_flag, add_json_flag, print_json
from mims_tf.utils import import_keras_quietly


def export_parser(sub):
    p = sub.add_parser(
        "export", help="export a run's best model: SavedModel (TF Serving), TFLite or .keras",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims export runs/adrenal              # saved_models/adrenal/<next version>/\n"
        "  mims export runs/adrenal --format tflite --quantize int8   # runs/adrenal/export/adrenal_int8.tflite\n"
        "  mims export --check saved_models/adrenal/1   # does it still serve its run's model and decision?\n"
        "  docker run -p 8501:8501 -v $PWD/saved_models/adrenal:/models/adrenal -e MODEL_NAME=adrenal "
        "tensorflow/serving",
    )
    p.add_argument("run", help="run folder (with --check: an export, a SavedModel version folder or a .tflite or "
                   ".keras file)")
    p.add_argument("--format", default="saved_model", choices=("saved_model", "tflite", "keras"),
                   help="default: saved_model")
    p.add_argument("--out", help="output folder (default: saved_models/ in the working directory for a "
                   "SavedModel, TF Serving's model base path's parent; RUN/export for the others)")
    p.add_argument("--name", default=None, help="served model name (default: the run folder's name)")
    p.add_argument("--version", type=int, default=None,
                   help="SavedModel version (default: the next free one; an existing version is never replaced)")
    p.add_argument("--quantize", default="none", choices=("none", "float16", "int8"),
                   help="TFLite weights: none, float16, or dynamic-range int8 (default: none)")
    p.add_argument("--new-signature", action="store_true",
                   help="allow a version whose classes or input shape differ from the name's other versions")
    add_decision_flag(p)
    p.add_argument("--check", action="store_true",
                   help="say whether the export named still serves its run's current model and decision (exit 1 "
                        "where stale)")
    p.add_argument("--of-run", default=None, metavar="RUN",
                   help="with --check: the run folder (default: the one recorded in the export)")
    add_json_flag(p)
    return p


def run_export(args):
    from mims_tf.runs.folder import RunFolder

    if args.check:
        from mims_tf.runs.export import check_export

        result = check_export(args.run, args.of_run)
        if args.json:
            print_json(result)
        elif result["current"]:
            print(f"{result['export']}: current (serves {result['run']}'s model and decision as they are)")
        else:
            print(f"{result['export']}: stale against {result['run']}: " + "; ".join(result["stale"]))
        return 0 if result["current"] else 1
    RunFolder(args.run).check(which="best")  # before TensorFlow starts
    import_keras_quietly()
    from mims_tf.runs.export import export_run

    info = export_run(args.run, args.format, out=args.out, name=args.name, version=args.version,
                      quantize=args.quantize, decision=args.decision, new_signature=args.new_signature)
    if args.json:
        print_json(info)
    elif args.format == "saved_model":
        print(f"wrote {info['path']} (TF Serving: --model_base_path={os.path.abspath(os.path.dirname(info['path']))}; "
              f"decision {info['metadata']['decision']['name']!r})")
    elif args.format == "tflite":
        print(f"wrote {info['path']} ({info['bytes']:,} bytes; largest difference from Keras "
              f"{info['max_abs_difference']:.2e}; decision {info['metadata']['decision']['name']!r})")
    else:
        print(f"wrote {info['path']} (decision {info['metadata']['decision']['name']!r})")
    return 0
