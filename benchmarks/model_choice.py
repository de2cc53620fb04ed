"""Which model each fold keeps, measured out of fold (issue 30): five candidates on real data.

A fold's model can be chosen in several ways; on a small validation split the choice itself can overfit. For each
data set and training seed this trains one K-fold run (`mims train` with `training.folds`, the budget of
`benchmarks/cross_validation.py`: preset `mims`, backbone `tiny` from scratch, 32 px, the data set's own splits
cleared, 0.7 / 0.15 / 0.15 with `split_seed` 0, so the test bags are the ones that script uses), keeps every
epoch's weights of every fold (a callback), and scores each fold's validation bags and the test bags with each
epoch's weights. The candidates, each fold's model chosen by:

- `best_auroc`: the epoch of the best validation AUROC (ties: the lower loss), the package's choice (`best.keras`);
- `best_loss`: the epoch of the lowest validation loss (`log.csv`);
- `last`: the last epoch (`last.keras`);
- `fixed_epoch`: one epoch for all folds, the one whose mean validation AUROC across the folds is highest. Measured
  out of fold without peeking: fold k's epoch is chosen on the other folds' validation bags (nested); on test,
  the epoch chosen on all folds;
- `average_last`: the mean of the weights of the last `ceil(epochs / 3)` epochs (the batch-norm statistics
  averaged too), as stochastic weight averaging does with a constant learning rate.

Printed per data set and seed: the out-of-fold AUROC of each candidate (pooled over all pool bags, raw
probabilities) and the test AUROC of its fold ensemble (mean of the K folds' probabilities). Then, for the
package's candidate, the two orders of ensembling the calibration (Platt, fitted out of fold): calibrating the
mean of the fold models' raw probabilities (what the package does) against the mean of the calibrated fold
models, by test ECE and by test sensitivity / specificity at the out-of-fold threshold.

Runs one training at a time, each (data set, seed) in a fresh process; finished ones are kept in
`benchmarks/results/model_choice/<set>_s<seed>.npz` and not rerun (`--fresh` redoes them).

    python benchmarks/model_choice.py > benchmarks/results/model_choice/results.txt
    python benchmarks/model_choice.py --sets breastmnist --seeds 0 --epochs 2 --results /tmp/mc   # a quick check

Ends with `name: value` lines: `oof_auroc_<candidate>` and `ensemble_test_auroc_<candidate>` (means over every
data set and seed), `oof_wins_<candidate>` (in how many (set, seed) a candidate has the highest out-of-fold
AUROC), `ensemble_test_ece_calibrated_mean` / `ensemble_test_ece_mean_of_calibrated` (means).
"""

import argparse
import csv
import json
import math
import os
import sys

import numpy as np

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))
import cross_validation as cvb  # noqa: E402  (the data sets, budget and unsplit manifests of the CV benchmark)

ROOT = cvb.ROOT
RESULTS = os.path.join(ROOT, "benchmarks", "results", "model_choice")
ORDERS = ("calibrated_mean", "mean_of_calibrated", "mean_of_fold_calibrated")
CANDIDATES = ("best_auroc", "best_loss", "last", "fixed_epoch", "average_last", "best_auroc_halves",
              "best_loss_halves")
# measured without choosing on the bags scored (the halves stand in for best_auroc and best_loss)
UNBIASED = ("best_auroc_halves", "best_loss_halves", "last", "fixed_epoch", "average_last")


def child(args):
    """Trains one (data set, seed) K-fold run, keeping every epoch's weights; saves the scores as .npz."""
    import keras

    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.fit import train
    from mims_tf.runs.folder import RunFolder, load_keras_file
    from mims_tf.runs.inputs import bag_source, predict_bags

    class Snapshots(keras.callbacks.Callback):
        """Every epoch's weights of every fold (a fold is one `fit`: a new list at each `on_train_begin`)."""

        def __init__(self):
            super().__init__()
            self.folds = []

        def on_train_begin(self, logs=None):
            self.folds.append([])

        def on_epoch_end(self, epoch, logs=None):
            self.folds[-1].append([np.array(w) for w in self.model.get_weights()])

    name, seed = args.child[0], int(args.child[1])
    _, classes, settings = cvb.SETS[name]
    out = os.path.join(args.work, f"{name}_s{seed}")
    values = dict(cvb.BUDGET, data=args.manifest, classes=classes, out=out, epochs=args.epochs, folds=args.folds,
                  **settings)
    values["seed"] = seed
    keras.utils.set_random_seed(seed)
    snapshots = Snapshots()
    train(RunConfig.from_dict(values), overwrite=True, verbose=0, callbacks=(snapshots,))
    run = RunFolder(out)
    if len(snapshots.folds) != args.folds or any(len(s) != args.epochs for s in snapshots.folds):
        raise RuntimeError(f"expected {args.folds} folds of {args.epochs} epochs of weights, got "
                           f"{[len(s) for s in snapshots.folds]}")
    saved = {"epochs": args.epochs, "folds": args.folds, "average_of": math.ceil(args.epochs / 3)}
    for k, (fold, weights) in enumerate(zip(run.folds(), snapshots.folds), start=1):
        config = fold.config()
        manifest = fold.manifest(config.data.classes)
        model = load_keras_file(fold.model_path("last"))
        sources = {split: bag_source(config, manifest, split) for split in ("val", "test")}
        last = {split: predict_bags(model, config, source)[:, 1] for split, source in sources.items()}
        averaged = [np.mean([w[i] for w in weights[-saved["average_of"]:]], axis=0) for i in range(len(weights[0]))]
        for split, source in sources.items():
            scores = []
            for epoch_weights in weights:
                model.set_weights(epoch_weights)
                scores.append(predict_bags(model, config, source)[:, 1])
            if not np.allclose(scores[-1], last[split], atol=1e-5):  # the snapshots are the saved model's weights
                raise RuntimeError(f"fold {k}: the last snapshot does not reproduce last.keras on {split}")
            model.set_weights(averaged)
            saved[f"fold{k}_{split}_scores"] = np.array(scores)
            saved[f"fold{k}_{split}_average"] = predict_bags(model, config, source)[:, 1]
            saved[f"fold{k}_{split}_labels"] = np.array([bag.label for bag in source.bags])
        with open(fold.file("log.csv"), encoding="utf-8") as f:
            saved[f"fold{k}_val_loss"] = np.array([float(row["val_loss"]) for row in csv.DictReader(f)])
        saved[f"fold{k}_best_epoch"] = fold.state()["best_epoch"]
    np.savez_compressed(args.save, **saved)
    print("RESULT " + json.dumps({"saved": args.save}))


def auroc(labels, scores):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def log_loss(labels, scores):
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def two_columns(p):
    return np.stack([1 - p, p], axis=1)


def analyse(data, rule):
    """Per candidate: out-of-fold AUROC (pooled raw scores) and test AUROC of the fold ensemble; and the
    calibration orders of the package's candidate on test."""
    from mims_tf.stats.calibration import expected_calibration_error, fit_platt, temperature_scale
    from mims_tf.stats.metrics import operating_point
    from mims_tf.stats.thresholds import choose_threshold

    folds, epochs = int(data["folds"]), int(data["epochs"])
    ks = range(1, folds + 1)
    val = {k: data[f"fold{k}_val_scores"] for k in ks}
    test = {k: data[f"fold{k}_test_scores"] for k in ks}
    val_labels = {k: data[f"fold{k}_val_labels"] for k in ks}
    test_labels = data["fold1_test_labels"]
    per_epoch = np.array([[auroc(val_labels[k], val[k][e]) for e in range(epochs)] for k in ks])  # (folds, epochs)
    chosen = {  # candidate: (fold k's out-of-fold scores, fold k's test scores)
        "best_auroc": {k: int(data[f"fold{k}_best_epoch"]) - 1 for k in ks},
        "best_loss": {k: int(np.argmin(data[f"fold{k}_val_loss"])) for k in ks},
        "last": {k: epochs - 1 for k in ks},
    }
    rows = {c: ({k: val[k][e] for k, e in chosen[c].items()}, {k: test[k][e] for k, e in chosen[c].items()})
            for c in chosen}
    nested = {k: int(np.argmax(np.delete(per_epoch, k - 1, axis=0).mean(axis=0))) for k in ks}
    overall = int(np.argmax(per_epoch.mean(axis=0)))
    rows["fixed_epoch"] = ({k: val[k][nested[k]] for k in ks}, {k: test[k][overall] for k in ks})
    rows["average_last"] = ({k: data[f"fold{k}_val_average"] for k in ks},
                            {k: data[f"fold{k}_test_average"] for k in ks})
    # best_auroc and best_loss choose on the very bags they are then scored on (optimistic): the same rules with
    # the choice made on the other half of the fold's bags (two random halves, each chosen on the other)
    rng = np.random.default_rng(0)
    for c, pick in (("best_auroc_halves", lambda y, v: int(np.argmax([auroc(y, e) for e in v]))),
                    ("best_loss_halves", lambda y, v: int(np.argmin([log_loss(y, e) for e in v])))):
        honest = {}
        for k in ks:
            half = rng.permutation(len(val_labels[k])) % 2 == 0
            honest[k] = np.zeros(len(val_labels[k]))
            for this in (half, ~half):
                other = ~this
                e = pick(val_labels[k][other], val[k][:, other])
                honest[k][this] = val[k][e][this]
        rows[c] = (honest, {k: test[k][chosen[c[:-len("_halves")]][k]] for k in ks})
    labels = np.concatenate([val_labels[k] for k in ks])
    result = {"epochs": {c: [e + 1 for e in chosen[c].values()] for c in chosen},
              "fixed_epoch_nested": [e + 1 for e in nested.values()], "fixed_epoch_all": overall + 1}
    for c, (oof, on_test) in rows.items():
        result[c] = {"oof_auroc": auroc(labels, np.concatenate([oof[k] for k in ks])),
                     "fold_mean_auroc": float(np.mean([auroc(val_labels[k], oof[k]) for k in ks])),
                     "test_auroc": auroc(test_labels, np.mean([on_test[k] for k in ks], axis=0))}
    # calibration, for the package's candidate: fitted on the out-of-fold raw scores
    oof, on_test = rows["best_auroc"]
    oof_scores = np.concatenate([oof[k] for k in ks])
    temperature, bias = fit_platt(labels, two_columns(oof_scores))
    calibrated_oof = temperature_scale(two_columns(oof_scores), temperature, bias)[:, 1]
    threshold = choose_threshold(labels, calibrated_oof, rule, None)
    orders = {
        "calibrated_mean": temperature_scale(two_columns(np.mean([on_test[k] for k in ks], axis=0)),
                                             temperature, bias)[:, 1],
        "mean_of_calibrated": np.mean([temperature_scale(two_columns(on_test[k]), temperature, bias)[:, 1]
                                       for k in ks], axis=0),
    }
    result["oof_operating_point"] = operating_point(labels, calibrated_oof, threshold)
    # each fold model calibrated on its own validation (out-of-fold) bags: one scale for every fold's scores
    fits = {k: fit_platt(val_labels[k], two_columns(oof[k])) for k in ks}
    per_fold_oof = np.concatenate([temperature_scale(two_columns(oof[k]), *fits[k])[:, 1] for k in ks])
    per_fold_threshold = choose_threshold(labels, per_fold_oof, rule, None)
    orders["mean_of_fold_calibrated"] = np.mean([temperature_scale(two_columns(on_test[k]), *fits[k])[:, 1]
                                                 for k in ks], axis=0)
    result["per_fold_oof_auroc"] = auroc(labels, per_fold_oof)
    result["per_fold_oof_operating_point"] = operating_point(labels, per_fold_oof, per_fold_threshold)
    for order, scores in orders.items():
        if order == "mean_of_fold_calibrated":
            threshold = per_fold_threshold
        result[order] = {"test_ece": expected_calibration_error(test_labels, two_columns(scores)),
                         "test_auroc": auroc(test_labels, scores), "score_std": float(np.std(scores)),
                         **operating_point(test_labels, scores, threshold)}
    result["oof_score_std"] = float(np.std(calibrated_oof))
    return result


def main():
    parser = cvb.parser_of(__doc__.splitlines()[0], os.path.join(ROOT, "runs", "model_choice"), RESULTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    os.makedirs(args.results, exist_ok=True)
    print(f"# Model choice within a fold, measured out of fold: {', '.join(args.sets)}, seeds {args.seeds}")
    print(f"- command: python benchmarks/model_choice.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"- budget: {dict(cvb.BUDGET, epochs=args.epochs)} (seed varied); {args.folds} folds; "
          "threshold rule youden\n")
    results = []
    for name in args.sets:
        for seed in args.seeds:
            save = os.path.join(args.results, f"{name}_s{seed}.npz")
            if args.fresh or not os.path.isfile(save):
                cvb.run_script(HERE, (name, str(seed)), cvb.unsplit_manifest(name, args.work), args, "--save", save)
            data = np.load(save)
            if int(data["epochs"]) != args.epochs or int(data["folds"]) != args.folds:
                raise SystemExit(f"{save}: made with {int(data['epochs'])} epochs and {int(data['folds'])} folds; "
                                 "use --fresh to redo it with these settings")
            r = analyse(data, "youden")
            results.append(r)
            print(f"## {name}, seed {seed}")
            print(f"- chosen epochs (of {args.epochs}): best_auroc {r['epochs']['best_auroc']}, best_loss "
                  f"{r['epochs']['best_loss']}, fixed_epoch {r['fixed_epoch_all']} (nested, per fold: "
                  f"{r['fixed_epoch_nested']}), average_last of the last {int(data['average_of'])}")
            print("| candidate | out-of-fold AUROC (pooled) | mean of the folds' own AUROC | ensemble test AUROC |")
            print("|---|---|---|---|")
            best = max(UNBIASED, key=lambda c: r[c]["oof_auroc"])
            for c in CANDIDATES:
                mark = " (best)" if c == best else ""
                print(f"| {c}{mark} | {r[c]['oof_auroc']:.3f} | {r[c]['fold_mean_auroc']:.3f} | "
                      f"{r[c]['test_auroc']:.3f} |")
            op = r["oof_operating_point"]
            print(f"- calibration of the fold ensemble (best_auroc): out of fold sensitivity {op['sensitivity']:.3f} / "
                  f"specificity {op['specificity']:.3f}, score std {r['oof_score_std']:.3f}")
            op = r["per_fold_oof_operating_point"]
            print(f"- each fold calibrated on its own bags: pooled out-of-fold AUROC {r['per_fold_oof_auroc']:.3f}, "
                  f"sensitivity {op['sensitivity']:.3f} / specificity {op['specificity']:.3f} at its threshold")
            for order in ORDERS:
                o = r[order]
                print(f"  - {order}: test ECE {o['test_ece']:.3f}, AUROC {o['test_auroc']:.3f}, sensitivity "
                      f"{o['sensitivity']:.3f} / specificity {o['specificity']:.3f}, score std {o['score_std']:.3f}")
            print(flush=True)
    figures = {}
    for c in CANDIDATES:
        figures[f"oof_auroc_{c}"] = float(np.mean([r[c]["oof_auroc"] for r in results]))
        figures[f"ensemble_test_auroc_{c}"] = float(np.mean([r[c]["test_auroc"] for r in results]))
        if c in UNBIASED:
            figures[f"oof_wins_{c}"] = sum(max(UNBIASED, key=lambda x: r[x]["oof_auroc"]) == c for r in results)
    differences = {c: [r[c]["oof_auroc"] - r["best_auroc_halves"]["oof_auroc"] for r in results]
                   for c in UNBIASED[1:]}
    print("Out-of-fold AUROC against best_auroc_halves, per run (" + ", ".join(f"{n} s{s}" for n in args.sets
                                                                        for s in args.seeds) + "):")
    for c, values in differences.items():
        print(f"- {c}: " + ", ".join(f"{v:+.3f}" for v in values) + f"; mean {np.mean(values):+.4f}, std "
              f"{np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}")
        figures[f"oof_auroc_{c}_minus_best_auroc_halves"] = float(np.mean(values))
    print()
    figures["per_fold_oof_sensitivity"] = float(np.mean([r["per_fold_oof_operating_point"]["sensitivity"]
                                                         for r in results]))
    for order in ORDERS:
        figures[f"ensemble_test_ece_{order}"] = float(np.mean([r[order]["test_ece"] for r in results]))
        figures[f"ensemble_test_sensitivity_{order}"] = float(np.mean([r[order]["sensitivity"] for r in results]))
    figures["oof_sensitivity"] = float(np.mean([r["oof_operating_point"]["sensitivity"] for r in results]))
    figures["runs"] = len(results)
    for key, value in figures.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
