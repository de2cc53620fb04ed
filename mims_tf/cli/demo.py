"""`mims demo`: the whole pipeline on built-in synthetic data, in a few minutes on a laptop CPU.

Writes a synthetic set (textured 8-slice volumes, 64x64; positive bags hold
lesions of 6 to 12 px in 1 to 3 slices; the test split's lesions are 4 to 9 px,
0.75x the training size: the scale shift of `benchmarks/scale_shift.py`, where
`mims` separated from `mims_noresizing` most clearly), trains `mims`, the same
head without its resizing (`mims_noresizing`) and the `mi_pre` baseline with the
tiny backbone on whole bags, evaluates them on the test split and says what the
numbers support:

- each model's AUROC, sensitivity and specificity at the threshold chosen on
  validation, with their 95 % intervals, and calibration error before and after
  the calibration fitted on validation, with a plain line where it does not
  carry over to the shifted test split;
- each pair of models' paired AUROC difference with its 95 % interval, "not
  significant" where the interval covers 0;
- the model it exports, chosen on validation loss (cross-entropy of the kept
  epoch), never on the test split: validation AUROC saturates at 1.0 on this
  easy in-distribution split and cannot rank the models then;
- how often the exported model's heatmap peak lands on a planted lesion (the
  pointing game, `mims_tf.explain.pointing`, over every positive test bag);

then exports that model (SavedModel and TFLite, both verified) and writes the
heatmaps of a true positive test volume (the median-scoring one; a missed
positive is said to be missed where there is no true positive). It calls the same
library functions as `mims train`, `mims evaluate`, `mims export` and `mims explain`.
"""

import os
import sys

from mims_tf.cli.flags import FORMATTER
from mims_tf.utils import import_keras_quietly

PRESETS = ("mims", "mims_noresizing", "mi_pre")
TRAIN_LESION = (6, 12)
TEST_LESION = (4, 9)  # 0.75x the training size
# The demo's set: 8 slices a volume, all of them in every training step (a sample of a bag's slices may miss
# its one lesion slice and teach a positive bag as negative); a test split large enough for paired intervals.
DATA = dict(seed=0, splits=(("train", 128), ("val", 64), ("test", 192)), instances=8, size=64, contrast=0.2,
            lesion_size={"train": TRAIN_LESION, "val": TRAIN_LESION, "test": TEST_LESION})


def pointing_game_run(run, data, split="test", which="best", **options):
    """The pointing game (`mims_tf.explain.pointing`) of a run's model on every positive bag of a split of a
    synthetic set (`mims_tf.data.synthetic.write_dataset`, whose `<split>_masks` say where the lesions are),
    the bags read as the run reads them. Returns `pointing_game`'s dict with `bag_ids` (e.g. `test/17`)."""
    import numpy as np

    from mims_tf.explain.pointing import pointing_game
    from mims_tf.runs.folder import RunFolder
    from mims_tf.runs.inputs import bag_source, eval_batches

    run = RunFolder.of(run)
    with run.reading():
        model, config, manifest = run.load(which)
        source = bag_source(config, manifest, split)
        masks = np.load(data)[f"{split}_masks"]
        labels = source.labels
        picks = [k for k in range(len(labels)) if labels[k] == 1]
        index = {k: int(source.bags[k].bag.rsplit("/", 1)[1]) for k in picks}
        bags = (batch[0].numpy() for k, batch in enumerate(eval_batches(config, source)) if labels[k] == 1)
        result = pointing_game(model, bags, (masks[index[k]] for k in picks), **options)
    result["bag_ids"] = [source.bags[k].bag for k in picks]
    return result


def _interval(value, low, high, signed=False):
    form = "+.3f" if signed else ".3f"
    return f"{value:{form}} ({low:{form}} to {high:{form}})"


def _results(results, decisions):
    print(f"  {'model':<15} {'AUROC (95 % CI)':>24} {'threshold':>9} {'sensitivity (95 % CI)':>24} "
          f"{'specificity (95 % CI)':>24} {'ECE before->after':>18} {'Brier before->after':>20}")
    for preset, r in results.items():
        print(f"  {preset:<15} {_interval(r['auroc'], r['auroc_low'], r['auroc_high']):>24} {r['threshold']:>9.3f} "
              f"{_interval(r['sensitivity'], r['sensitivity_low'], r['sensitivity_high']):>24} "
              f"{_interval(r['specificity'], r['specificity_low'], r['specificity_high']):>24} "
              f"{r['ece']:>8.3f} -> {r['ece_calibrated']:.3f} {r['brier']:>10.3f} -> {r['brier_calibrated']:.3f}")
    for preset, r in results.items():
        if not r["threshold_reliable"]:
            print(f"  {preset}: threshold unreliable: {r['threshold_warning']}")
    for preset, r in results.items():
        val = decisions[preset].get("val_sensitivity")
        if val is not None and r["sensitivity_high"] < val:
            print(f"  {preset}: sensitivity {r['sensitivity']:.3f} on the test split against {val:.3f} on "
                  "validation at the same threshold: the smaller test lesions score lower and many positives fall "
                  "below a threshold chosen on training-size lesions. A threshold does not carry over to a shift: "
                  "choose it on data like the data it will decide (mims decide).")
    worse = [p for p, r in results.items() if r["ece_calibrated"] > r["ece"] or r["brier_calibrated"] > r["brier"]]
    for preset in worse:
        r = results[preset]
        print(f"  {preset}: the calibration fitted on validation made the test probabilities worse (ECE "
              f"{r['ece']:.3f} -> {r['ece_calibrated']:.3f}, Brier {r['brier']:.3f} -> {r['brier_calibrated']:.3f}): "
              "it was fitted on training-size lesions and does not carry over to the shifted test split.")


def _comparisons(results, presets):
    from mims_tf.runs.evaluate import compare_runs

    print("\npaired comparisons on the same test bags: AUROC difference, 95 % bootstrap interval over bags:")
    significant = []
    for i, a in enumerate(presets):
        for b in presets[i + 1:]:
            difference, low, high = compare_runs(results[a], results[b])
            verdict = "not significant" if low <= 0 <= high else "significant"
            if verdict == "significant":
                significant.append(f"{a if difference > 0 else b} beats {b if difference > 0 else a}")
            print(f"  {a} - {b}: {_interval(difference, low, high, signed=True)}  {verdict}")
    if significant:
        print(f"  on this test split: {'; '.join(significant)}; every other pair is a tie this run cannot order.")
    else:
        print("  on this test split no model is significantly better than another: one run cannot order them.")
    print("  (benchmarks/scale_shift.py, 3 seeds, 16-slice volumes, test at 0.75x: mims beat mims_noresizing by "
          "+0.075 (+0.036 to +0.117) and tied mi_pre, +0.020 (-0.012 to +0.053).)")


def _choice(summaries, presets):
    """The exported model: the lowest validation loss of the kept epoch (AUROC saturates on validation)."""
    loss = {p: float("inf") if summaries[p]["best_val_loss"] is None else summaries[p]["best_val_loss"]
            for p in presets}
    best = min(presets, key=loss.get)
    saturated = [p for p in presets if summaries[p]["best_val_auroc"] >= 1.0]
    print(f"\nexported: {best}, chosen on validation loss (cross-entropy of the kept epoch, lower is better: "
          + ", ".join(f"{p} {loss[p]:.4f}" for p in presets)
          + "), not on the test split.")
    print("  validation AUROC, not used to choose: " + ", ".join(f"{p} {summaries[p]['best_val_auroc']:.3f}"
                                                               for p in presets)
          + (f"; {', '.join(saturated)} saturated at 1.000, where AUROC cannot rank models any more."
             if saturated else "."))
    return best


def _showcase(result, threshold):
    """`(bag index in the split, line)`: the median-scoring true positive, or the best-scoring missed one."""
    import numpy as np

    scores, labels = np.asarray(result["scores"]), np.asarray(result["labels"])
    hits = [k for k in np.flatnonzero(labels == 1) if scores[k] >= threshold]
    if hits:
        k = sorted(hits, key=lambda k: scores[k])[len(hits) // 2]
        line = (f"a true positive, the median-scoring of {len(hits)}: P {scores[k]:.3f} >= threshold "
                f"{threshold:.3f}")
    else:
        k = int(np.flatnonzero(labels == 1)[np.argmax(scores[labels == 1])])
        line = (f"a MISSED positive (no positive test bag reaches the threshold; this is the highest-scoring): "
                f"P {scores[k]:.3f} < threshold {threshold:.3f}")
    return int(k), result["bag_ids"][k], line


def demo(out, epochs=25, presets=PRESETS, verbose=2, data=None):
    """Runs the demo into `out`; `data` overrides `DATA`'s keys (e.g. smaller splits for a quick test)."""
    from mims_tf.data.synthetic import write_dataset
    from mims_tf.explain.pointing import TOLERANCE
    from mims_tf.runs import RunConfig, evaluate_run, explain_file, export_run, train
    from mims_tf.runs.decision import run_decision
    from mims_tf.runs.folder import RunFolder

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:  # before anything is written
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    settings = {**DATA, **(data or {})}
    os.makedirs(out, exist_ok=True)
    print(f"writing the synthetic set to {out}/data ...", file=sys.stderr, flush=True)
    path = write_dataset(os.path.join(out, "data"), **settings)
    results, summaries, decisions = {}, {}, {}
    for preset in presets:
        print(f"training {preset} ({epochs} epochs) ...", file=sys.stderr, flush=True)
        config = RunConfig.from_dict({
            "model": {"preset": preset, "backbone": "tiny", "weights": None},
            "data": {"source": path, "image_size": 64, "instances": settings["instances"]},
            "training": {"batch_size": 8, "epochs": epochs, "learning_rate": 3e-3, "checkpoint_steps": 1000},
            "out": os.path.join(out, preset),
        })
        summaries[preset] = train(config, overwrite=True, verbose=verbose)
        results[preset] = evaluate_run(config.out)
        decisions[preset] = run_decision(RunFolder.of(config.out))
    counts = dict(settings["splits"])
    test = settings["lesion_size"]["test"]
    print(f"\nresults on the test split ({counts['test']} bags; lesions of {test[0]} to {test[1]} px against "
          f"{TRAIN_LESION[0]} to {TRAIN_LESION[1]} px in training and validation). Sensitivity and specificity at "
          "the threshold chosen on validation, on calibrated probabilities, with Wilson 95 % intervals; ECE "
          "(calibration error) and Brier score, lower is better, before and after the calibration fitted on "
          "validation:")
    _results(results, decisions)
    _comparisons(results, list(presets))
    best = _choice(summaries, list(presets))
    run_dir = os.path.join(out, best)
    print(f"computing the pointing game of {best} ...", file=sys.stderr, flush=True)
    game = pointing_game_run(run_dir, path)
    print(f"\npointing game of {best}: the peak of its heatmap over all slices of a bag lies on a planted lesion "
          f"(within {TOLERANCE} px) in {game['hits']} of {game['bags']} positive test bags: "
          f"hit rate {game['hit_rate']:.3f}")
    saved = export_run(run_dir, "saved_model", out=os.path.join(run_dir, "export", "saved_models"))
    tflite = export_run(run_dir, "tflite")
    k, bag_id, line = _showcase(results[best], results[best]["threshold"])
    index = int(bag_id.rsplit("/", 1)[1])
    overlays, _, _ = explain_file(run_dir, f"{path}#test_images/{index}", slices=3)
    where = game["per_bag"][game["bag_ids"].index(bag_id)]
    print(f"\nexported model: {best} -> {run_dir}/best.keras (its kept epoch)")
    print(f"  SavedModel (TF Serving layout): {saved['path']}")
    print(f"  TFLite: {tflite['path']} ({tflite['bytes']:,} bytes, verified)")
    print(f"  heatmaps of test volume {bag_id}, {line}; its heatmap peak (slice {where['slice']}) is "
          + ("on a planted lesion" if where["hit"] else f"{where['distance']:.1f} px from the nearest lesion: a miss")
          + f": {overlays}/index.md")
    print(f"each run folder ({', '.join(f'{out}/{p}' for p in presets)}) holds config.yaml, manifest.csv,")
    print("best.keras, last.keras, decision.json (calibration and threshold), log.csv, tensorboard/,")
    print("eval_test.csv (per bag), roc_test.png and reliability_test.png; try: mims evaluate " + out)
    return 0


def demo_parser(sub):
    p = sub.add_parser("demo", help="train, compare and evaluate three models on built-in synthetic data",
                       epilog="example: mims demo --out runs/demo", formatter_class=FORMATTER)
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=25, help="epochs per model (default: 25)")
    return p


def run_demo(args):
    import_keras_quietly()
    return demo(args.out, epochs=args.epochs)
