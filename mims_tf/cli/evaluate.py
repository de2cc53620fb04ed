"""`mims evaluate`: bag-level metrics of runs, their mean and spread, paired comparisons."""

import argparse
import os

from mims_tf.cli.flags import FORMATTER, add_decision_flag, add_json_flag, print_json
from mims_tf.utils import import_keras_quietly


def expand_runs(paths):
    """Run folders, a folder of run folders standing for the runs inside it (sorted)."""
    from mims_tf.runs.folder import RunFolder

    runs = []
    for path in paths:
        inside = sorted(os.path.join(path, n) for n in os.listdir(path)) if os.path.isdir(path) else []
        inside = [p for p in inside if RunFolder(p).exists()]
        runs += inside if not RunFolder(path).exists() and inside else [path]
    return runs


def evaluate_parser(sub):
    p = sub.add_parser(
        "evaluate", help="bag-level AUROC (95 %% CI), accuracy, sensitivity, specificity, calibration of runs",
        formatter_class=FORMATTER,
        epilog="examples:\n  mims evaluate runs/adrenal\n"
        "  mims evaluate runs/a runs/b runs/c   # mean and spread per preset\n"
        "  mims evaluate runs/a runs/b            # two runs on the same bags: "
        "paired CI of the AUROC difference\n"
        "  mims evaluate runs/adrenal --decision screening   # at a decision made by mims decide\n"
        "  mims evaluate runs/kather --instances 4   # every bag on 4 sampled tiles: bag size is no signal",
    )
    p.add_argument("runs", nargs="+", help="run folders, or a folder of run folders")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--model", dest="which", default="best", choices=("best", "last"),
                   help="the best epoch's model (by validation AUROC, ties by loss) or the last (default: best)")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on the calibrated P(positive) (default: the run's, chosen on validation); "
                        "the files then end in _at<threshold> (eval_test_at0.9.csv), beside the run's own")
    add_decision_flag(p)
    p.add_argument("--strict", action="store_true",
                   help="refuse a bag unlike the model's training bags (the input contract) instead of warning")
    p.add_argument("--sensitivity", default=None, help=argparse.SUPPRESS)  # moved to `mims decide`: says so
    p.add_argument("--instances", type=int, default=None,
                   help="evaluate every bag on this many of its instances, sampled once with a fixed seed "
                   "(e.g. the training bag size; default: whole bags, as in the paper)")
    add_json_flag(p)
    return p


def run_evaluate(args):
    from mims_tf.runs.folder import RunFolder

    if args.sensitivity is not None:
        raise ValueError("evaluate no longer changes a run's threshold; make a named decision with mims decide RUN "
                         f"--sensitivity {args.sensitivity} --name NAME, then evaluate it with --decision NAME")
    args.runs = expand_runs(args.runs)  # `mims evaluate runs/demo`: every run inside
    for run in args.runs:  # before TensorFlow starts
        RunFolder(run).check(which=None)
    import_keras_quietly()
    from mims_tf.runs.evaluate import compare_runs, evaluate_runs, output_stem

    results, groups = evaluate_runs(args.runs, split=args.split, threshold=args.threshold, instances=args.instances,
                                    which=args.which, decision=args.decision, strict=args.strict)
    comparison = None
    if len(results) == 2 and results[0]["bag_ids"] == results[1]["bag_ids"]:
        comparison = compare_runs(*results)
    if args.json:
        hidden = ("scores", "labels", "bag_ids", "data_path")
        print_json({"runs": [{k: v for k, v in r.items() if k not in hidden} for r in results],
                    "groups": [{"preset": preset, "data": data, **summary}
                               for (preset, data), summary in groups.items()],
                    "auroc_difference": None if comparison is None else dict(zip(("difference", "low", "high"),
                                                                                  comparison))})
        return 0
    for r in results:
        print(
            f"{r['path']} ({r['preset']}, {r['model']} model): {r['split']} AUROC {r['auroc']:.4f} "
            f"(95 % CI {r['auroc_low']:.3f}-{r['auroc_high']:.3f}, {r['bags']} bags); "
            f"at threshold {r['threshold']:.3f} "
            f"({'decision ' + repr(r['decision']) + ', ' if r['decision'] != 'run' else ''}{r['threshold_from']}): "
            f"accuracy {r['accuracy']:.4f}, sensitivity {r['sensitivity']:.4f} "
            f"({r['sensitivity_low']:.2f}-{r['sensitivity_high']:.2f}, {r['positives']} positive), specificity "
            f"{r['specificity']:.4f} ({r['specificity_low']:.2f}-{r['specificity_high']:.2f}, "
            f"{r['negatives']} negative)"
        )
        print(f"  calibration ({r['calibration']}, fitted on validation): "
              f"ECE {r['ece']:.4f} -> {r['ece_calibrated']:.4f}, "
              f"Brier {r['brier']:.4f} -> {r['brier_calibrated']:.4f}; instances per bag: {r['instances']}")
        if not r["threshold_reliable"]:
            print(f"  warning: the threshold is unreliable: {r['threshold_warning']}")
        stem = output_stem(r["split"], args.instances, args.which, args.threshold, args.decision)
        folder = r["path"]
        print(f"  per-bag CSV {folder}/eval_{stem}.csv, ROC {folder}/roc_{stem}.png, "
              f"reliability {folder}/reliability_{stem}.png")
    for (preset, data), summary in groups.items():
        n = summary["auroc"]["n"]
        if n > 1:
            print(f"{preset} over {n} runs on {data}: "
                  + ", ".join(f"{name} {s['mean']:.4f} +- {s['std']:.4f}" for name, s in summary.items()))
    if comparison is not None:
        difference, low, high = comparison
        print(f"AUROC {results[0]['path']} - {results[1]['path']}: {difference:+.4f} "
              f"(paired bootstrap 95 % CI {low:+.4f} to {high:+.4f}, {results[0]['bags']} bags)")
    return 0
