"""How should a trained MIL model score a test bag, and are its probabilities calibrated?

Training sees a sampled subset of each bag (the run's `instances`), evaluation whole bags. For each dataset
and pooling (top-k k=5, max, mean, attention) this trains one run and scores the test bags

  (a) whole, as in the paper;
  (b) as the mean probability over M subsets of the training instance count (seeded, deterministic);
  (c) whole, after training on whole bags (`instances: null`);

and reports test AUROC, Brier score and ECE (15 bins over P(positive)), before and after calibration fitted on
the validation split scored the same way: temperature scaling, and Platt scaling (temperature and bias). One
seed per cell (the budget of 2 CPU cores); each run in a fresh process; a finished run folder is reused (only
scored again); results appended to `benchmarks/results/bag_inference/results.csv` as they come (resumable).

    python benchmarks/bag_inference.py                      # all datasets
    python benchmarks/bag_inference.py --datasets synthetic adrenalmnist3d

Ends with one `<dataset>_<pooling>_<mode>_<metric>: value` line per figure.
"""

import argparse
import concurrent.futures
import csv
import json
import multiprocessing
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))
MOBILENET = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "weights", "mobilenet_2_5_224_tf_no_top.h5"))
POOLINGS = {"topk": "mims_top5", "max": "mims_max", "mean": "mims_mean", "attention": "mims_attention"}
SUBSETS = 8


def datasets(work):
    """name -> flat RunConfig settings (the budgets of the committed tables)."""
    return {
        "synthetic": dict(data=os.path.join(work, "synthetic", "synthetic.npz"), image_size=64, instances=8,
                          epochs=25, batch_size=8, learning_rate=3e-3, kernels="oct"),
        "adrenalmnist3d": dict(data=os.path.join(DATA, "adrenalmnist3d", "adrenalmnist3d.npz"), image_size=28,
                               instances=8, epochs=6, batch_size=8, learning_rate=3e-3, kernels="crc"),
        "pneumoniamnist": dict(data=os.path.join(DATA, "pneumoniamnist", "pneumoniamnist.npz"), image_size=96,
                               instances=1, epochs=4, batch_size=16, learning_rate=3e-3, kernels="crc"),
        "kather-crc-msi": dict(data=os.path.join(DATA, "kather-crc-msi"), bag_pattern=r"TCGA-\w\w-\w\w\w\w",
                               classes=["MSS_JPEG", "MSIMUT_JPEG"], image_size=96, instances=4, epochs=5,
                               batch_size=8, learning_rate=1e-3, kernels="crc", backbone="mobilenet",
                               backbone_kwargs={"alpha": 0.25}, weights=MOBILENET),
    }


COLUMNS = ["dataset", "pooling", "mode", "test_bags", "auroc", "brier", "ece", "temperature", "ece_temperature",
           "brier_temperature", "platt_t", "platt_bias", "ece_platt", "brier_platt", "seconds"]


def run_one(name, pooling, train_whole, settings, work):
    """Trains one run (in a child process) and returns result rows for its scoring modes."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.fit import train
    from mims_tf.runs.folder import RunFolder
    from mims_tf.runs.inputs import bag_source, eval_batches
    from mims_tf.stats.calibration import (
        brier_score,
        expected_calibration_error,
        fit_platt,
        fit_temperature,
        temperature_scale,
    )
    from mims_tf.utils import import_keras_quietly

    import_keras_quietly()
    values = dict(settings, preset=POOLINGS[pooling], seed=0, checkpoint_steps=10**6,
                  out=os.path.join(work, f"{name}_{pooling}_{'whole' if train_whole else 'sampled'}"))
    if train_whole:
        values.update(instances=None, batch_size=1 if name == "kather-crc-msi" else values["batch_size"])
    start = time.time()
    state = os.path.join(values["out"], "state.json")
    if not (os.path.isfile(state) and json.load(open(state))["epochs_done"] == values["epochs"]):
        train(RunConfig.from_dict(values), overwrite=True, verbose=0)
    model, config, manifest = RunFolder(values["out"]).load()
    count = settings["instances"]

    def scores(split, mode):
        source = bag_source(config, manifest, split)
        if mode == "subsets":
            probs = np.mean([model.predict(eval_batches(config, source, instances=count, seed=j), verbose=0)
                             for j in range(SUBSETS)], axis=0)
        else:
            probs = model.predict(eval_batches(config, source), verbose=0)
        return source.labels, probs

    rows = []
    single = settings["instances"] == 1  # 2D images: a bag of one, so whole = sampled; no subsets
    for mode in (["whole"] if train_whole or single else ["whole", "subsets"]):
        val_labels, val_probs = scores("val", mode)
        labels, probs = scores("test", mode)
        temperature = fit_temperature(val_labels, val_probs)
        calibrated = temperature_scale(probs, temperature)
        platt_t, platt_bias = fit_platt(val_labels, val_probs)
        platt = temperature_scale(probs, platt_t, platt_bias)
        rows.append({
            "dataset": name, "pooling": pooling, "mode": "trained whole, scored whole" if train_whole else
            ("scored whole" if mode == "whole" else f"mean of {SUBSETS} subsets of {count}"),
            "test_bags": len(labels), "auroc": f"{roc_auc_score(labels, probs[:, 1]):.4f}",
            "brier": f"{brier_score(labels, probs):.4f}", "ece": f"{expected_calibration_error(labels, probs):.4f}",
            "temperature": f"{temperature:.3f}", "brier_temperature": f"{brier_score(labels, calibrated):.4f}",
            "ece_temperature": f"{expected_calibration_error(labels, calibrated):.4f}",
            "platt_t": f"{platt_t:.3f}", "platt_bias": f"{platt_bias[1]:.3f}",
            "brier_platt": f"{brier_score(labels, platt):.4f}",
            "ece_platt": f"{expected_calibration_error(labels, platt):.4f}",
            "seconds": f"{time.time() - start:.0f}",
        })
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+",
                        default=["synthetic", "adrenalmnist3d", "kather-crc-msi", "pneumoniamnist"])
    parser.add_argument("--poolings", nargs="+", default=list(POOLINGS))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "bag_inference"))
    parser.add_argument("--work", default=os.path.join("runs", "bag_inference"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if "synthetic" in args.datasets:
        from mims_tf.data.synthetic import write_dataset

        write_dataset(os.path.join(args.work, "synthetic"), seed=0, instances=16, size=64, contrast=0.25,
                      lesion_size={"train": (4, 8), "val": (4, 8), "test": (4, 8)})
    path = os.path.join(args.out, "results.csv")
    rows = list(csv.DictReader(open(path))) if os.path.isfile(path) else []
    done = {(r["dataset"], r["pooling"], r["mode"].startswith("trained whole")) for r in rows}
    for name in args.datasets:
        for pooling in args.poolings:
            for train_whole in (False, True):
                if ((name, pooling, train_whole) in done
                        or (train_whole and datasets(args.work)[name]["instances"] == 1)):
                    continue
                print(f"[bag_inference] {name} {pooling} {'trained on whole bags' if train_whole else ''}", flush=True)
                context = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                    rows += pool.submit(run_one, name, pooling, train_whole, datasets(args.work)[name],
                                        args.work).result()
                with open(path + ".tmp", "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=COLUMNS)
                    writer.writeheader()
                    writer.writerows(rows)
                os.replace(path + ".tmp", path)
    write_report(rows, args.out)
    for r in rows:
        key = f"{r['dataset']}_{r['pooling']}_{r['mode'].replace(' ', '_').replace(',', '')}"
        for metric in ("auroc", "ece", "ece_temperature", "ece_platt"):
            print(f"{key}_{metric}: {r[metric]}")


def write_report(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# Scoring test bags: whole, mean of subsets, or trained whole; calibration", "",
             "`python benchmarks/bag_inference.py`; one seed per cell; ECE with 15 bins over P(positive); "
             "calibrations fitted on the validation split scored the same way: temperature (T) and Platt "
             "(T and a bias b on the logit).", "",
             "| dataset | pooling | scoring | test bags | AUROC | Brier | ECE | T | ECE, T | Brier, T | Platt T, b | "
             "ECE, Platt | Brier, Platt |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['pooling']} | {r['mode']} | {r['test_bags']} | {r['auroc']} | "
                     f"{r['brier']} | "
                     f"{r['ece']} | {r['temperature']} | {r['ece_temperature']} | {r['brier_temperature']} | "
                     f"{r['platt_t']}, {r['platt_bias']} | {r['ece_platt']} | {r['brier_platt']} |")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    names = sorted({r["dataset"] for r in rows})
    if not names:
        return
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), dpi=110, squeeze=False)
    modes = ("scored whole", "mean of subsets", "trained whole, scored whole")

    def kind(mode):
        return "mean of subsets" if mode.startswith("mean of") else mode

    for axis, name in zip(axes[0], names):
        subset = [r for r in rows if r["dataset"] == name]
        poolings = sorted({r["pooling"] for r in subset})
        for m, mode in enumerate(modes):
            values = [next((float(r["auroc"]) for r in subset if r["pooling"] == p and kind(r["mode"]) == mode), np.nan)
                      for p in poolings]
            axis.bar(np.arange(len(poolings)) + (m - 1) * 0.27, values, width=0.27, label=mode)
        axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        axis.set_xticks(range(len(poolings)), poolings)
        axis.set_ylim(0.2, 1.0)
        axis.set_title(name, fontsize=9)
        axis.set_ylabel("test AUROC")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(os.path.join(out, "auroc_by_scoring.png"))
    plt.close(figure)


import numpy as np  # noqa: E402  (used by write_report)

if __name__ == "__main__":
    main()
