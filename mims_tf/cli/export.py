"""`mims export`: a run's model as a SavedModel (TF Serving), TFLite or .keras."""

import os

from mims_tf.cli.flags import FORMATTER
from mims_tf.utils import import_keras_quietly


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
    from mims_tf.runs.folder import RunFolder

    RunFolder(args.run).check(which=None)  # before TensorFlow starts
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
