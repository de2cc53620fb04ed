"""Cross-validation against one split, on real data (issue 30).

For each data set: (a) one run on a single 0.7 / 0.15 / 0.15 split, (b) one run with K folds (default 5) over
the same train + val pool, the same test split. The data sets' own splits are cleared (a manifest CSV in the
scratch folder, pointing at the shared .npz; no data is copied) so `assign_splits` draws 0.7 / 0.15 / 0.15 with
`split_seed` 0; the folds run draws its test split the same way with the same seed (test is held out first), and
the script checks that both runs have the same test bags. Model: preset `mims`, backbone `tiny` from scratch,
32 px, batch 16, learning rate 3e-3, `--epochs` epochs; the single run keeps its best validation epoch, each fold
the mean of its last epochs' weights (`training.keep` defaults: `benchmarks/model_choice.py` says why).

Printed per data set (and as `name: value` lines at the end):

- `cv_interval_over_split_interval_<set>`: width of the out-of-fold AUROC 95 % bootstrap interval (all pool bags)
  over the width of the single split's validation-AUROC interval (`auroc_ci` over its val bags); target <= 0.6;
- `oof_ece_<set>`: ECE of the out-of-fold predictions after a cross-fitted calibration, beside
  `sampling_ece_<set>`, the ECE a perfectly calibrated model shows from sampling alone at that many bags;
- `ensemble_test_auroc_<set>` (mean of the fold models) vs `single_test_auroc_<set>` on the test split;
- `oof_auroc_best_<set>` vs `oof_auroc_last_<set>`: the fold models kept (`best.keras`: the weight mean)
  against each fold's last epoch, measured out of fold;
- `ensemble_test_sensitivity_<set>` at the out-of-fold threshold vs `oof_sensitivity_<set>`, with the
  fold models' own mean test sensitivity at that threshold and the spread (std) of the calibrated scores,
  to see whether averaging the fold models shrinks the scores towards the middle.

Each data set's two trainings run in a fresh process, one after another (never two at once); finished data sets
are kept in `benchmarks/results/cross_validation/<set>.json` and not rerun (`--fresh` redoes them).

    python benchmarks/cross_validation.py > benchmarks/results/cross_validation/results.txt   # 18 min on 2 cores
    python benchmarks/cross_validation.py --sets breastmnist --epochs 2     # a quick check
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA_ROOT = os.path.join(ROOT, "..", "shared", "data")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "cross_validation")  # --results moves it
# name: (file under the data root, classes (the last is positive), data settings)
SETS = {
    "breastmnist": ("breastmnist/breastmnist.npz", ["1", "0"], {"instances": 1}),  # positive: 0 = malignant
    "pneumoniamnist": ("pneumoniamnist/pneumoniamnist.npz", ["0", "1"], {"instances": 1}),  # 1 = pneumonia
    "adrenalmnist3d": ("adrenalmnist3d/adrenalmnist3d.npz", ["0", "1"], {"instances": 8}),  # 1 = adrenal mass
}
BUDGET = dict(preset="mims", backbone="tiny", weights=None, kernels="crc", image_size=32, batch_size=16,
              learning_rate=3e-3, seed=0, split_seed=0, split_fractions=(0.7, 0.15, 0.15), checkpoint_steps=10**6)


def unsplit_manifest(name, work):
    """A manifest CSV of the data set's bags with their splits cleared (paths into ../shared/data)."""
    from mims_tf.data.layouts import from_medmnist
    from mims_tf.data.manifest import write_manifest

    relative, classes, _ = SETS[name]
    manifest = from_medmnist(os.path.join(DATA_ROOT, relative), classes=classes)
    rows = [dict(row, split="") for row in manifest.rows]
    path = os.path.join(work, name, "manifest_unsplit.csv")
    write_manifest(type(manifest)(rows, list(manifest.classes), manifest.source, manifest.lines), path)
    return path


def child(args):
    """Trains and scores one data set's single-split run or folds run; prints one JSON line."""
    import keras
    import numpy as np

    from mims_tf.export import as_float32
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.evaluate import evaluate_run
    from mims_tf.runs.fit import train
    from mims_tf.runs.folder import RunFolder
    from mims_tf.runs.inputs import bag_source, predict_bags
    from mims_tf.stats.bootstrap import auroc_ci

    name, which = args.child
    _, classes, settings = SETS[name]
    out = os.path.join(args.work, name, which)
    values = dict(BUDGET, data=args.manifest, classes=classes, out=out, epochs=args.epochs, **settings)
    if which == "cv":
        values["folds"] = args.folds
    keras.utils.set_random_seed(0)
    start = time.time()
    train(RunConfig.from_dict(values), overwrite=True, verbose=0)
    seconds = time.time() - start
    run = RunFolder(out)
    config = run.config()
    manifest = run.manifest(config.data.classes)
    result = {"seconds": seconds, "test_bags": sorted(row["bag"] for row in manifest.rows if row["split"] == "test"),
              "splits": {s: len({r["bag"] for r in manifest.rows if r["split"] == s})
                         for s in ("train", "val", "test")}}
    test = evaluate_run(run, write=False)
    result.update(test_auroc=test["auroc"], test_auroc_low=test["auroc_low"], test_auroc_high=test["auroc_high"],
                  test_sensitivity=test["sensitivity"], test_specificity=test["specificity"],
                  test_score_std=float(np.std(test["scores"])), threshold=test["threshold"])
    if which == "single":
        source = bag_source(config, manifest, "val")
        probs = predict_bags(as_float32(run.load_model("best")), config, source)
        labels = np.array([bag.label for bag in source.bags])
        auroc, low, high = auroc_ci(labels, probs[:, 1])
        result.update(val_bags=len(labels), val_auroc=auroc, val_auroc_low=low, val_auroc_high=high)
    else:
        from mims_tf.runs.cv import evaluate_out_of_fold
        from mims_tf.runs.decision import run_decision
        from mims_tf.stats.calibration import temperature_scale
        from mims_tf.stats.metrics import binary_metrics, operating_point

        best, last = evaluate_out_of_fold(run, "best"), evaluate_out_of_fold(run, "last", write=False)
        result.update(oof_bags=best["bags"], oof_auroc=best["auroc"], oof_auroc_low=best["auroc_low"],
                      oof_auroc_high=best["auroc_high"], oof_auroc_last=last["auroc"],
                      oof_auroc_last_low=last["auroc_low"], oof_auroc_last_high=last["auroc_high"],
                      oof_ece_raw=best["ece"], oof_ece=best["ece_calibrated"],
                      sampling_ece=best["ece_of_a_calibrated_model_at_this_size"],
                      oof_sensitivity=best["sensitivity"], oof_specificity=best["specificity"],
                      oof_score_std=float(np.std(best["scores"])))
        decision = run_decision(run)
        fold_scores, fold_ops = [], []
        for fold in run.folds():  # each fold model alone on the test split, calibrated as the ensemble is
            fold_config = fold.config()
            source = bag_source(fold_config, fold.manifest(fold_config.data.classes), "test")
            scores = temperature_scale(predict_bags(as_float32(fold.load_model("best")), fold_config, source),
                                       decision["temperature"], decision.get("bias"))[:, 1]
            labels = np.array([bag.label for bag in source.bags])
            fold_scores.append(float(np.std(scores)))
            fold_ops.append({**binary_metrics(labels, scores, decision["threshold"]),
                             **operating_point(labels, scores, decision["threshold"])})
        result.update(fold_test_auroc=[op["auroc"] for op in fold_ops],
                      fold_test_sensitivity=[op["sensitivity"] for op in fold_ops],
                      fold_test_specificity=[op["specificity"] for op in fold_ops], fold_test_score_std=fold_scores)
    print("RESULT " + json.dumps(result))


def run_script(script, child, manifest, args, *extra):
    """Runs `script --child <child...>` (one training, in a fresh process) with the budget flags of `args`;
    returns the JSON of its last `RESULT ` line (this script's and `model_choice.py`'s children print one)."""
    command = [sys.executable, script, "--child", *child, "--manifest", manifest, "--work", args.work,
               "--epochs", str(args.epochs), "--folds", str(args.folds), *extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"{' '.join(child)}: the child failed (exit {done.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def run_child(name, which, manifest, args):
    return run_script(HERE, (name, which), manifest, args)


def parser_of(description, work, results):
    """The flags this script and `model_choice.py` share: data sets, budget, where runs and results go."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--work", default=work)
    parser.add_argument("--results", default=results, help="folder of the stored results")
    parser.add_argument("--fresh", action="store_true", help="redo what is stored")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    return parser


def width(low, high):
    return high - low


def fold_details(run):
    """Each fold's best epoch and best validation AUROC (its state.json) and the AUROC of its out-of-fold scores
    alone (oof.csv), read from the folds run folder; None where it is not there."""
    import csv

    from sklearn.metrics import roc_auc_score

    path = os.path.join(run, "oof.csv")
    if not os.path.isfile(path):
        return None
    rows = list(csv.DictReader(open(path)))
    positive = [c for c in rows[0] if c.startswith("best_p_")][-1]
    details = []
    for k in sorted({int(r["fold"]) for r in rows}):
        state = json.load(open(os.path.join(run, f"fold_{k}", "state.json")))
        mine = [r for r in rows if int(r["fold"]) == k]
        labels = [int(r["label"] == positive[len("best_p_"):]) for r in mine]
        details.append({"best_epoch": state["best_epoch"], "best_val_auroc": state["best_val_auroc"],
                        "auroc": roc_auc_score(labels, [float(r[positive]) for r in mine])})
    return details


def report(name, single, cv, folds, work):
    """The printed lines of one data set, and its `name: value` figures."""
    import numpy as np

    details = fold_details(os.path.join(work, name, "cv"))

    ratio = width(cv["oof_auroc_low"], cv["oof_auroc_high"]) / width(single["val_auroc_low"], single["val_auroc_high"])
    same = single["test_bags"] == cv["test_bags"]
    s = single["splits"]
    lines = [
        f"## {name}",
        f"- splits (single run): train {s['train']}, val {s['val']}, test {s['test']} bags; folds run: "
        f"{cv['oof_bags']} pool bags in {folds} folds, the same {len(cv['test_bags'])} test bags: "
        f"{'yes' if same else 'NO'}",
        f"- time: single {single['seconds']:.0f} s, {folds} folds {cv['seconds']:.0f} s (training only)",
        f"- single split: val AUROC {single['val_auroc']:.3f} [{single['val_auroc_low']:.3f}, "
        f"{single['val_auroc_high']:.3f}] ({single['val_bags']} bags, width "
        f"{width(single['val_auroc_low'], single['val_auroc_high']):.3f})",
        f"- out of fold: AUROC {cv['oof_auroc']:.3f} [{cv['oof_auroc_low']:.3f}, {cv['oof_auroc_high']:.3f}] "
        f"({cv['oof_bags']} bags, width {width(cv['oof_auroc_low'], cv['oof_auroc_high']):.3f}); "
        f"interval ratio {ratio:.3f} (target <= 0.6: {'met' if ratio <= 0.6 else 'MISSED'})",
        f"- out-of-fold ECE: raw {cv['oof_ece_raw']:.3f}, cross-fitted calibration {cv['oof_ece']:.3f}; a calibrated "
        f"model with these scores at {cv['oof_bags']} bags shows {cv['sampling_ece']:.3f} from sampling alone "
        f"(target <= 0.05 or <= sampling: {'met' if cv['oof_ece'] <= max(0.05, cv['sampling_ece']) else 'MISSED'})",
        f"- model choice out of fold: kept model (best.keras) AUROC {cv['oof_auroc']:.3f} [{cv['oof_auroc_low']:.3f}, "
        f"{cv['oof_auroc_high']:.3f}], last epoch {cv['oof_auroc_last']:.3f} [{cv['oof_auroc_last_low']:.3f}, "
        f"{cv['oof_auroc_last_high']:.3f}]",
        f"- test AUROC: fold ensemble {cv['test_auroc']:.3f} [{cv['test_auroc_low']:.3f}, {cv['test_auroc_high']:.3f}],"
        f" single split {single['test_auroc']:.3f} [{single['test_auroc_low']:.3f}, {single['test_auroc_high']:.3f}],"
        f" the fold models alone {np.mean(cv['fold_test_auroc']):.3f} (mean; "
        f"{', '.join(f'{v:.3f}' for v in cv['fold_test_auroc'])})",
        f"- sensitivity / specificity at the out-of-fold threshold {cv['threshold']:.3f}: out of fold "
        f"{cv['oof_sensitivity']:.3f} / {cv['oof_specificity']:.3f}; ensemble on test {cv['test_sensitivity']:.3f} / "
        f"{cv['test_specificity']:.3f}; fold models alone on test {np.mean(cv['fold_test_sensitivity']):.3f} / "
        f"{np.mean(cv['fold_test_specificity']):.3f} (mean)",
        f"- spread (std) of the calibrated P(positive): out of fold {cv['oof_score_std']:.3f}, ensemble on test "
        f"{cv['test_score_std']:.3f}, fold models alone on test {np.mean(cv['fold_test_score_std']):.3f} (mean)",
    ]
    if details:
        epochs = ", ".join(str(d["best_epoch"]) for d in details)
        aurocs = [d["auroc"] for d in details]
        lines.append(
            f"- folds: kept up to epochs {epochs} of {single.get('epochs', '?')}; each fold's AUROC on its own "
            f"out-of-fold bags {', '.join(format(a, '.3f') for a in aurocs)} (mean {np.mean(aurocs):.3f}; pooled "
            f"over the folds {cv['oof_auroc']:.3f}: the fold models' scores are pooled on their own scales)")
    lines.append("")
    figures = {
        f"cv_interval_over_split_interval_{name}": ratio,
        f"oof_ece_{name}": cv["oof_ece"], f"sampling_ece_{name}": cv["sampling_ece"],
        f"ensemble_test_auroc_{name}": cv["test_auroc"], f"single_test_auroc_{name}": single["test_auroc"],
        f"oof_auroc_best_{name}": cv["oof_auroc"], f"oof_auroc_last_{name}": cv["oof_auroc_last"],
        f"ensemble_test_sensitivity_{name}": cv["test_sensitivity"], f"oof_sensitivity_{name}": cv["oof_sensitivity"],
        f"fold_models_test_sensitivity_{name}": float(np.mean(cv["fold_test_sensitivity"])),
        f"same_test_bags_{name}": int(same),
    }
    return lines, figures


def main():
    parser = parser_of(__doc__.splitlines()[0], os.path.join(ROOT, "runs", "cross_validation"), RESULTS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    os.makedirs(args.results, exist_ok=True)
    print(f"# Cross-validation against one split: {', '.join(args.sets)}")
    print(f"- command: python benchmarks/cross_validation.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"- budget: {dict(BUDGET, epochs=args.epochs)}; {args.folds} folds; instances per bag in training: "
          f"{ {name: SETS[name][2]['instances'] for name in args.sets} }")
    print("- both runs of a set draw 0.7/0.15/0.15 with split_seed 0 from the set's bags, its own splits cleared\n")
    figures = {}
    for name in args.sets:
        stored = os.path.join(args.results, f"{name}.json")
        if os.path.isfile(stored) and not args.fresh:
            saved = json.load(open(stored))
            if saved["epochs"] != args.epochs or saved["folds"] != args.folds:
                raise SystemExit(f"{stored}: made with {saved['epochs']} epochs and {saved['folds']} folds; "
                                 "use --fresh to redo it with these settings")
        else:
            manifest = unsplit_manifest(name, args.work)
            saved = {"epochs": args.epochs, "folds": args.folds, "single": run_child(name, "single", manifest, args),
                     "cv": run_child(name, "cv", manifest, args)}
            with open(stored, "w") as f:
                json.dump(saved, f, indent=1)
        lines, values = report(name, dict(saved["single"], epochs=saved["epochs"]), saved["cv"], saved["folds"],
                               args.work)
        print("\n".join(lines), flush=True)
        figures.update(values)
    for key, value in figures.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
