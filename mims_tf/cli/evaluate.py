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

    # a cross-validated run without a test split has its out-of-fold figures only
    scored = [run for run in args.runs if not (args.split == "test" and _cv_without_test(run))]
    results, groups = evaluate_runs(scored, split=args.split, threshold=args.threshold, instances=args.instances,
                                    which=args.which, decision=args.decision, strict=args.strict)
    comparison = None
    if len(results) == 2 and results[0]["bag_ids"] == results[1]["bag_ids"]:
        comparison = compare_runs(*results)
    oof = _out_of_fold(args.runs, args.which, args.decision)  # cross-validated runs: their out-of-fold figures
    oof_comparison = None
    if len(oof) == 2 and sorted(oof[0]["bag_ids"]) == sorted(oof[1]["bag_ids"]):
        oof_comparison = compare_runs(*[_sorted(r) for r in oof])
    hidden = ("scores", "labels", "bag_ids", "data_path")
    if args.json:
        print_json({"runs": [{k: v for k, v in r.items() if k not in hidden} for r in results],
                    "out_of_fold": [{k: v for k, v in r.items() if k not in hidden} for r in oof],
                    "out_of_fold_auroc_difference": None if oof_comparison is None else dict(
                        zip(("difference", "low", "high"), oof_comparison)),
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
    for r in oof:
        print(f"{r['path']}: cross-validated ({r['folds']} folds, out of fold) AUROC {r['auroc']:.4f} (95 % CI "
              f"{r['auroc_low']:.3f}-{r['auroc_high']:.3f}, {r['bags']} bags); at threshold {r['threshold']:.3f}: "
              f"sensitivity {r['sensitivity']:.3f} ({r['sensitivity_low']:.2f}-{r['sensitivity_high']:.2f}), "
              f"specificity {r['specificity']:.3f} ({r['specificity_low']:.2f}-{r['specificity_high']:.2f}); "
              f"ECE {r['ece']:.4f} -> {r['ece_calibrated']:.4f} (calibration cross-fitted; a perfectly calibrated "
              f"model with these scores shows {r['ece_of_a_calibrated_model_at_this_size']:.4f} from sampling "
              "alone at this size)")
    if oof_comparison is not None:
        difference, low, high = oof_comparison
        print(f"out-of-fold AUROC {oof[0]['path']} - {oof[1]['path']}: {difference:+.4f} (paired bootstrap 95 % CI "
              f"{low:+.4f} to {high:+.4f}, {oof[0]['bags']} bags)")
    return 0


def _out_of_fold(runs, which, decision=None):
    from mims_tf.runs.cv import evaluate_out_of_fold
    from mims_tf.runs.folder import RunFolder

    return [evaluate_out_of_fold(run, which, decision=decision) for run in runs if RunFolder(run).folds()]


def _cv_without_test(run):
    from mims_tf.runs.folder import RunFolder

    run = RunFolder(run)
    return bool(run.folds()) and not run.manifest().split_counts().get("test")


def _sorted(result):
    """An out-of-fold result with its bags in name order (two runs' folds may order them differently)."""
    order = sorted(range(len(result["bag_ids"])), key=result["bag_ids"].__getitem__)
    return {**result, "bag_ids": [result["bag_ids"][i] for i in order], "labels": result["labels"][order],
            "scores": result["scores"][order]}
