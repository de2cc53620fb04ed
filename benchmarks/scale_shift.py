"""The paper's central claim, asked directly: does MIMS hold up when test lesions are another size?

One synthetic set (`mims_tf.data.synthetic`: textured 16-slice volumes at 64 x 64, positive bags hold
1 to 3 slices with lesions): training and validation lesions of 6 to 12 pixels, and five test sets
of the same 96 bags (same textures, same lesion positions, one seed) with the lesions at 0.5x, 0.75x,
1x, 1.5x and 2x that size. Every preset below is trained with the tiny backbone from scratch (the
demo's settings: 8 instances a step, batch 8, learning rate 3e-3, `--epochs`, the best validation
epoch kept), one (preset, seed) per fresh process, and scored on each test set with its calibrated
scoring model, as `mims evaluate` does. Resumable: finished (preset, seed) rows in `results.csv` are
kept; per-bag scores in `scores/`.

    python benchmarks/scale_shift.py                      # 8 presets x 3 seeds: 12 min on 2 cores
    python benchmarks/scale_shift.py --presets mims,mi_pre --seeds 0 --epochs 3    # a quick check

Writes `table.md` (mean and spread of AUROC over seeds per test scale, and the paired bootstrap 95 %
interval of AUROC(mims) - AUROC(row), seeds pooled, per scale) and `auroc_by_scale.png` to `--out`.
Ends with `auroc_<preset>_<scale>` lines (the mean over seeds).
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

from mims_tf.bench.report import read_results  # noqa: E402  (results.csv rows, as the bench reads them)

PRESETS = ("mims", "mims_noresizing", "si_cnn", "mi_pre", "mi_pre_conv", "pyramid_mims", "mi_pre_trident",
           "featpyra_45")
SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)
TRAIN_LESION = (6, 12)
DATA = dict(instances=16, size=64)


def _scale_name(scale):
    return f"{scale:g}x"


def write_data(folder, contrast):
    """The training set and one test set per scale (`test_<scale>.npz`, the same 96 bags at each scale)."""
    from mims_tf.data.synthetic import write_dataset

    folder = os.path.join(folder, f"contrast_{contrast:g}")
    paths = {"train": os.path.join(folder, "train", "synthetic.npz")}
    if not os.path.exists(paths["train"]):
        write_dataset(os.path.join(folder, "train"), seed=0, splits=(("train", 128), ("val", 48)),
                      lesion_size=TRAIN_LESION, contrast=contrast, **DATA)
    for scale in SCALES:
        size = (max(1, round(TRAIN_LESION[0] * scale)), round(TRAIN_LESION[1] * scale))
        paths[scale] = os.path.join(folder, _scale_name(scale), "synthetic.npz")
        if not os.path.exists(paths[scale]):
            write_dataset(os.path.join(folder, _scale_name(scale)), seed=100, splits=(("test", 96),),
                          lesion_size=size, contrast=contrast, **DATA)
    return paths


def child(args):
    """Trains one (preset, seed) and scores every test scale; prints one JSON line."""
    from mims_tf.data import from_medmnist
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.decision import load_scoring_model
    from mims_tf.runs.fit import train
    from mims_tf.runs.inputs import bag_source, predict_bags

    paths = json.loads(args.paths)
    run_dir = os.path.join(args.work, f"{args.preset}_s{args.seed}")
    config = RunConfig.from_dict({
        "model": {"preset": args.preset, "backbone": "tiny", "weights": None},
        "data": {"source": paths["train"], "image_size": 64, "instances": 8},
        "training": {"batch_size": 8, "epochs": args.epochs, "learning_rate": 3e-3, "checkpoint_steps": 1000},
        "seed": args.seed, "out": run_dir,
    })
    start = time.time()
    summary = train(config, overwrite=True, verbose=0)
    model, config, _, _ = load_scoring_model(run_dir)  # calibrated, as every scoring path
    scores, labels = {}, None
    for scale in SCALES:
        source = bag_source(config, from_medmnist(paths[str(scale)]), "test")
        scores[str(scale)] = predict_bags(model, config, source)[:, 1].tolist()
        labels = source.labels.tolist()
    return {"preset": args.preset, "seed": args.seed, "val_auroc": summary["best_val_auroc"],
            "best_epoch": summary["best_epoch"], "seconds": round(time.time() - start), "labels": labels,
            "scores": scores}


def write_rows(rows, path):
    import csv

    from mims_tf.utils import atomic_open

    fields = ["preset", "seed", "val_auroc", "best_epoch", "seconds"] + [f"auroc_{_scale_name(s)}" for s in SCALES]
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def report(out, presets, seeds):
    """`table.md`, `auroc_by_scale.png` and the figure lines, from `results.csv` and `scores/`."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from mims_tf.stats.bootstrap import paired_auroc_difference_ci
    from mims_tf.utils import new_figure, save_figure, write_text

    rows = read_results(os.path.join(out, "results.csv"))
    done = [p for p in presets if any(r["preset"] == p for r in rows)]
    scores, labels = {}, None
    for preset in done:
        runs = [json.load(open(os.path.join(out, "scores", f"{preset}_s{r['seed']}.json"), encoding="utf-8"))
                for r in rows if r["preset"] == preset]
        labels = np.array(runs[0]["labels"])
        scores[preset] = {s: np.array([run["scores"][str(s)] for run in runs]) for s in SCALES}
    mean = {p: {s: float(np.mean([roc_auc_score(labels, run) for run in scores[p][s]])) for s in SCALES} for p in done}
    spread = {p: {s: float(np.std([roc_auc_score(labels, run) for run in scores[p][s]])) for s in SCALES} for p in done}
    header = "| preset | seeds | " + " | ".join(f"test {_scale_name(s)}" for s in SCALES) + " |"
    lines = [
        "# Scale shift: trained on lesions of 6 to 12 px, tested at 0.5x to 2x (`benchmarks/scale_shift.py`)", "",
        "AUROC on the same 96 test bags at each lesion scale: mean +- standard deviation over seeds (tiny backbone,",
        "64 px, from scratch).", "", header, "|" + "---|" * (len(SCALES) + 2)]
    for p in done:
        count = len(scores[p][SCALES[0]])
        lines.append(f"| `{p}` | {count} | " + " | ".join(f"{mean[p][s]:.3f} +- {spread[p][s]:.3f}" for s in SCALES)
                     + " |")
    if "mims" in done:
        lines += ["", "AUROC(mims) - AUROC(row), paired bootstrap 95 % interval over the test bags (2,000 resamples;",
                  "the seeds pooled: each resample's AUROC is the mean over a model's seeds). **beats** / **loses**:",
                  "the interval excludes 0; otherwise a tie.", "", header, "|" + "---|" * (len(SCALES) + 2)]
        verdicts = {}
        for p in done:
            if p == "mims":
                continue
            cells = []
            for s in SCALES:
                difference, low, high = paired_auroc_difference_ci(labels, scores["mims"][s], scores[p][s])
                verdict = "beats" if low > 0 else "loses" if high < 0 else "ties"
                verdicts[p, s] = verdict
                cells.append(f"{difference:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}")
            lines.append(f"| `{p}` | {len(scores[p][SCALES[0]])} | " + " | ".join(cells) + " |")
        for s in SCALES:
            counts = {v: sum(1 for (p, t), w in verdicts.items() if t == s and w == v)
                      for v in ("beats", "ties", "loses")}
            lines.append(f"- test {_scale_name(s)}: mims beats {counts['beats']}, ties {counts['ties']}, "
                         f"loses to {counts['loses']} of {len(done) - 1} rows")
    write_text(os.path.join(out, "table.md"), "\n".join(lines) + "\n")
    figure = new_figure(7, 4.5)
    axis = figure.add_subplot(1, 1, 1)
    for p in done:
        axis.errorbar(SCALES, [mean[p][s] for s in SCALES], yerr=[spread[p][s] for s in SCALES], marker="o",
                      capsize=3, label=p, linewidth=2.5 if p == "mims" else 1.2)
    axis.set_xscale("log", base=2)
    axis.set_xticks(SCALES, [_scale_name(s) for s in SCALES])
    axis.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    axis.set_xlabel("test lesion size / training lesion size")
    axis.set_ylabel("test AUROC (mean +- sd over seeds)")
    axis.set_title("Scale shift on the synthetic set")
    axis.legend(fontsize=8, ncol=2)
    save_figure(figure, os.path.join(out, "auroc_by_scale.png"))
    return mean


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--contrast", type=float, default=0.2, help="lesion brightness above the background (0 to 1)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scale_shift"))
    parser.add_argument("--work", default=os.path.join(ROOT, "runs", "scale_shift"), help="run folders and data")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return

    presets, seeds = args.presets.split(","), [int(s) for s in args.seeds.split(",")]
    os.makedirs(os.path.join(args.out, "scores"), exist_ok=True)
    paths = write_data(os.path.join(args.work, "data"), args.contrast)
    results = os.path.join(args.out, "results.csv")
    rows = read_results(results)
    done = {(r["preset"], int(r["seed"])) for r in rows}
    for seed in seeds:
        for preset in presets:
            if (preset, seed) in done:
                continue
            print(f"{preset} seed {seed} ...", flush=True)
            command = [sys.executable, HERE, "--child", "--preset", preset, "--seed", str(seed), "--epochs",
                       str(args.epochs), "--work", args.work, "--paths",
                       json.dumps({str(k): v for k, v in paths.items()})]
            completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)
            if completed.returncode:
                print(f"  failed (exit {completed.returncode})", flush=True)
                continue
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            from sklearn.metrics import roc_auc_score

            from mims_tf.utils import write_json

            write_json(os.path.join(args.out, "scores", f"{preset}_s{seed}.json"), result)
            row = {k: result[k] for k in ("preset", "seed", "best_epoch", "seconds")}
            row["val_auroc"] = f"{result['val_auroc']:.4f}"
            for s in SCALES:
                row[f"auroc_{_scale_name(s)}"] = f"{roc_auc_score(result['labels'], result['scores'][str(s)]):.4f}"
            rows.append(row)
            write_rows(rows, results)
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items() if k.startswith("auroc") or k == "seconds"),
                  flush=True)
    mean = report(args.out, presets, seeds)
    for preset, by_scale in mean.items():
        for scale, value in by_scale.items():
            print(f"auroc_{preset}_{_scale_name(scale)}: {value:.3f}")


if __name__ == "__main__":
    main()
