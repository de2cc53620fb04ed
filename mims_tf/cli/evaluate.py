"""`mims evaluate`: bag-level metrics of runs, their mean and spread, paired comparisons."""

import os

from mims_tf.cli.flags import FORMATTER
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
        "  mims evaluate runs/adrenal --sensitivity 0.95   # store a threshold reaching "
        "95 % sensitivity on validation\n"
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
    from mims_tf.runs.folder import RunFolder

    args.runs = expand_runs(args.runs)  # `mims evaluate runs/demo`: every run inside
    for run in args.runs:  # before TensorFlow starts
        RunFolder(run).check(which=None)
    import_keras_quietly()
    from mims_tf.runs.evaluate import compare_runs, evaluate_runs, output_stem

    results, groups = evaluate_runs(args.runs, split=args.split, threshold=args.threshold, instances=args.instances,
                                    which=args.which, sensitivity=args.sensitivity)
    for r in results:
        print(
            f"{r['run']} ({r['preset']}, {r['model']} model): {r['split']} AUROC {r['auroc']:.4f} "
            f"(95 % CI {r['auroc_low']:.3f}-{r['auroc_high']:.3f}, {r['bags']} bags); "
            f"at threshold {r['threshold']:.3f} "
            f"({r['threshold_from']}): accuracy {r['accuracy']:.4f}, sensitivity {r['sensitivity']:.4f}, "
            f"specificity {r['specificity']:.4f}"
        )
        print(f"  calibration ({r['calibration']}, fitted on validation): "
              f"ECE {r['ece']:.4f} -> {r['ece_calibrated']:.4f}, "
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
