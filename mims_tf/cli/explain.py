"""`mims explain`: heatmaps of what drove a run's decision on one file."""

import os

from mims_tf.cli.flags import FORMATTER, add_decision_flag, add_json_flag, print_json
from mims_tf.utils import import_keras_quietly


def explain_parser(sub):
    p = sub.add_parser(
        "explain", help="heatmaps of what drove a decision: slices ranked, overlays, index.md and a contact sheet "
        "index.png (supplement C)",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims explain runs/adrenal scan.nii.gz\n"
               "  mims explain runs/adrenal scan.nii.gz --layer backbone --slices 5"
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
    add_decision_flag(p)
    p.add_argument("--strict", action="store_true",
                   help="refuse a bag unlike the model's training bags (the input contract) instead of warning")
    add_json_flag(p)
    return p


def run_explain(args):
    from mims_tf.runs.folder import RunFolder

    RunFolder(args.run).check(which=None)  # before TensorFlow starts
    import_keras_quietly()
    from mims_tf.runs.explain import explain_file

    out, written, probabilities = explain_file(args.run, args.file, out=args.out, layer_name=args.layer,
                                class_index=args.class_index, slices=args.slices, method=args.method,
                                decision=args.decision, strict=args.strict)
    if args.json:
        print_json({"out": out, "slices": [{"slice": s, "contribution": float(score), "png": path}
                                           for s, score, path in written],
                    "probabilities": probabilities, "index": os.path.join(out, "index.md")})
        return 0
    for s, score, path in written:
        print(f"slice {s}: contribution {score:.4g} -> {path}")
    print(f"index: {os.path.join(out, 'index.md')}")
    print(f"contact sheet: {os.path.join(out, 'index.png')}")
    return 0
