"""`mims demo`: the whole pipeline on built-in synthetic data, in a few minutes on a laptop CPU.

Writes a synthetic set (textured 16-slice volumes, 64x64; positive bags hold
lesions of 6 to 12 px; the test split's lesions are half that size, the scale
shift that separated the models in `benchmarks/scale_shift.py`), trains `mims`,
the same head without its resizing (`mims_noresizing`) and the `mi_pre`
baseline with the tiny backbone, evaluates them on the test split, exports the
one that did best on validation (SavedModel and TFLite, both verified), writes
heatmaps for a positive test volume, and prints where everything went. It calls
the same library functions as `mims train`, `mims evaluate`, `mims export` and
`mims explain`.

On the scale-shift benchmark (3 seeds, paired intervals) `mims` beat
`mims_noresizing` at this shift (+0.094 AUROC) and tied `mi_pre` (+0.036,
interval -0.028 to +0.102): one demo run may order them either way.
"""

import os
import sys

from mims_tf.cli.flags import FORMATTER
from mims_tf.utils import import_keras_quietly

PRESETS = ("mims", "mims_noresizing", "mi_pre")


def demo(out, epochs=25, presets=PRESETS, verbose=2):
    import numpy as np

    from mims_tf.data.synthetic import write_dataset
    from mims_tf.runs import RunConfig, evaluate_run, explain_file, export_run, train

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:  # before anything is written
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    os.makedirs(out, exist_ok=True)
    print(f"writing the synthetic set to {out}/data ...", file=sys.stderr, flush=True)
    data = write_dataset(  # the settings of benchmarks/scale_shift.py, tested at 0.5x
        os.path.join(out, "data"), seed=0, splits=(("train", 128), ("val", 48), ("test", 96)), instances=16,
        size=64, contrast=0.2, lesion_size={"train": (6, 12), "val": (6, 12), "test": (3, 6)},
    )
    results, summaries = {}, {}
    for preset in presets:
        print(f"training {preset} ({epochs} epochs) ...", file=sys.stderr, flush=True)
        config = RunConfig.from_dict({
            "model": {"preset": preset, "backbone": "tiny", "weights": None},
            "data": {"source": data, "image_size": 64, "instances": 8},
            "training": {"batch_size": 8, "epochs": epochs, "learning_rate": 3e-3, "checkpoint_steps": 1000},
            "out": os.path.join(out, preset),
        })
        summaries[preset] = train(config, overwrite=True, verbose=verbose)
        results[preset] = evaluate_run(config.out)
    print("\nresults on the test split (lesions half the training size); accuracy, sensitivity and specificity at")
    print("the threshold chosen on validation, on calibrated probabilities (ECE: calibration error, lower is better):")
    print(f"  {'model':<15} {'AUROC (95 % CI)':>22} {'threshold':>9} {'accuracy':>9} {'sensitivity':>12} "
          f"{'specificity':>12} {'ECE':>6}")
    for preset, r in results.items():
        interval = f"{r['auroc']:.3f} ({r['auroc_low']:.3f}-{r['auroc_high']:.3f})"
        print(f"  {preset:<15} {interval:>22} {r['threshold']:>9.3f} {r['accuracy']:>9.3f} {r['sensitivity']:>12.3f} "
              f"{r['specificity']:>12.3f} {r['ece_calibrated']:>6.3f}")
        if not r["threshold_reliable"]:
            print(f"  {'':<15} threshold unreliable: {r['threshold_warning']}")
    # Chosen on validation, as a user must (the test split is looked at once, above, and never chosen on):
    # the higher validation AUROC, ties to the lower validation loss.
    best = min(presets, key=lambda p: (-summaries[p]["best_val_auroc"], summaries[p]["best_val_loss"] or 0.0))
    run_dir = os.path.join(out, best)
    print(f"\nexported: {best}, chosen on validation ("
          + ", ".join(f"{p}: AUROC {summaries[p]['best_val_auroc']:.3f}, loss {summaries[p]['best_val_loss'] or 0:.4f}"
                      for p in presets) + "; higher AUROC, ties to lower loss), not on the test split")
    saved = export_run(run_dir, "saved_model", out=os.path.join(run_dir, "export", "saved_models"))
    tflite = export_run(run_dir, "tflite")
    arrays = np.load(data)
    positive = int(np.flatnonzero(arrays["test_labels"][:, 0])[0])
    overlays, _, _ = explain_file(run_dir, f"{data}#test_images/{positive}", slices=3)
    print(f"\nbest: {best} -> {run_dir}/best.keras")
    print(f"  SavedModel (TF Serving layout): {saved['path']}")
    print(f"  TFLite: {tflite['path']} ({tflite['bytes']:,} bytes, verified)")
    print(f"  heatmaps of a positive test volume: {overlays}/index.md")
    print(f"each run folder ({', '.join(f'{out}/{p}' for p in presets)}) holds config.yaml, manifest.csv,")
    print("best.keras, last.keras, decision.json (calibration and threshold), log.csv, tensorboard/,")
    print("eval_test.csv (per bag), roc_test.png and reliability_test.png; try: mims evaluate " + out)
    return 0


def demo_parser(sub):
    p = sub.add_parser("demo", help="train, compare and evaluate two models on built-in synthetic data",
                       epilog="example: mims demo --out runs/demo", formatter_class=FORMATTER)
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=25, help="epochs per model (default: 25)")
    return p


def run_demo(args):
    import_keras_quietly()
    return demo(args.out, epochs=args.epochs)
