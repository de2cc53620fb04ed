"""`mims demo`: the whole pipeline on built-in synthetic data, in a few minutes on a laptop CPU.

Writes a synthetic set (textured 16-slice volumes, 64x64; positive bags hold
small lesions; the test split's lesions are twice as large, a scale shift the
models never saw), trains `mims` and the `mi_pre` baseline with the tiny
backbone, evaluates both on the test split, exports the better one (SavedModel
and TFLite, both verified) and writes heatmaps for a positive test volume, and
prints where everything went.
"""

import os
import sys

import numpy as np

from mims_tf.data.synthetic import write_dataset
from mims_tf.train.config import TrainConfig
from mims_tf.train.evaluate import evaluate_run
from mims_tf.train.run import train

PRESETS = ("mims", "mi_pre")


def demo(out, epochs=25, presets=PRESETS, verbose=2):
    os.makedirs(out, exist_ok=True)
    print(f"writing the synthetic set to {out}/data ...", file=sys.stderr, flush=True)
    data = write_dataset(
        os.path.join(out, "data"), seed=0, instances=16, size=64, contrast=0.25,
        lesion_size={"train": (4, 8), "val": (4, 8), "test": (8, 16)},
    )
    results = {}
    for preset in presets:
        print(f"training {preset} ({epochs} epochs) ...", file=sys.stderr, flush=True)
        config = TrainConfig(
            data=data, preset=preset, backbone="tiny", image_size=64, instances=8, batch_size=8,
            epochs=epochs, learning_rate=3e-3, out=os.path.join(out, preset), checkpoint_steps=1000,
        )
        train(config, overwrite=True, verbose=verbose)
        results[preset] = evaluate_run(config.out)
    print("\nresults on the test split (lesions twice the training size):")
    print(f"  {'model':<8} {'AUROC':>6} {'accuracy':>9} {'sensitivity':>12} {'specificity':>12}")
    for preset, r in results.items():
        print(f"  {preset:<8} {r['auroc']:>6.3f} {r['accuracy']:>9.3f} {r['sensitivity']:>12.3f} {r['specificity']:>12.3f}")
    best = max(results, key=lambda p: results[p]["auroc"])
    exported, tflite, overlays = _export_and_explain(os.path.join(out, best), data)
    print(f"\nbest: {best} -> {out}/{best}/best.keras")
    print(f"  SavedModel (TF Serving layout): {exported}")
    print(f"  TFLite: {tflite['path']} ({tflite['bytes']:,} bytes, verified)")
    print(f"  heatmaps of a positive test volume: {overlays}/index.md")
    print(f"each run folder ({', '.join(f'{out}/{p}' for p in presets)}) holds config.yaml, manifest.csv,")
    print("best.keras, last.keras, log.csv, tensorboard/, eval_test.csv (per bag) and roc_test.png")
    return 0


def _export_and_explain(run_dir, data):
    from mims_tf.explain.heatmap import explain_bag
    from mims_tf.export import export_saved_model, export_tflite
    from mims_tf.train.run import load_run, sample_bags

    model, config, manifest = load_run(run_dir)
    sample = sample_bags(config, manifest)
    name = os.path.basename(os.path.normpath(run_dir))
    exported = export_saved_model(model, os.path.join(run_dir, "export", "saved_models"), name=name, sample=sample)
    tflite = export_tflite(model, os.path.join(run_dir, "export", f"{name}.tflite"), sample=sample[:1])
    arrays = np.load(data)
    positive = int(np.flatnonzero(arrays["test_labels"][:, 0])[0])
    bag = np.repeat(arrays["test_images"][positive][None, ..., None].astype(np.float32), 3, axis=-1)
    folder = os.path.join(run_dir, "explain", f"test_{positive}")
    explain_bag(model, bag, folder, slices=3, name=f"test_{positive}")
    return exported, tflite, folder
