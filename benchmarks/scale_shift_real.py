"""The scale-shift test on a real set: models trained at 224 px, tested on images rescaled by 0.5x to 2x.

Takes the run folders of a finished `mims bench` (by default the BreastMNIST Table 1 at 224 px with the
frozen ImageNet MobileNet 0.25, `benchmarks/tables_224.sh`), and scores each run's test split again with
every image rescaled by 0.5, 0.75, 1, 1.5 and 2 about its centre and cropped (larger) or padded with black
(smaller) back to 224 x 224 (bilinear, antialiased when shrinking), so what was a lesion of n pixels is one of s x n
pixels in a frame of the same size. Scoring is the run's calibrated scoring model, as `mims evaluate` scores. No
training here.

    python benchmarks/scale_shift_real.py --runs runs/bench/table1_breastmnist_224_frozen

Writes `table.md` (AUROC per scale, mean +- sd over seeds, and the paired bootstrap 95 % interval of
AUROC(mims) - AUROC(row) per scale, seeds and test bags resampled) and `auroc_by_scale.png` to `--out`.
Ends with `auroc_<preset>_<scale>` lines (the mean over seeds).
"""

import argparse
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The synthetic test's presets and scales, asked again on real images (scale_shift also puts the repository on the
# path).
from scale_shift import PRESETS, ROOT, SCALES  # noqa: E402


def rescale(bag, scale):
    """`bag` `(S, H, W, C)` zoomed by `scale` about its centre, cropped or padded with 0 back to `(H, W)`."""
    import numpy as np
    import tensorflow as tf

    if scale == 1.0:
        return bag
    _, height, width, _ = bag.shape
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    zoomed = tf.image.resize(bag.astype(np.float32), size, method="bilinear", antialias=scale < 1).numpy()
    out = np.zeros(bag.shape, np.float32)
    # the centre of the zoomed image goes to the centre of the frame: crop what overflows, pad what is short
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    src_y, src_x = max(top, 0), max(left, 0)
    dst_y, dst_x = max(-top, 0), max(-left, 0)
    h, w = min(height - dst_y, size[0] - src_y), min(width - dst_x, size[1] - src_x)
    out[:, dst_y:dst_y + h, dst_x:dst_x + w] = zoomed[:, src_y:src_y + h, src_x:src_x + w]
    return out


def score_run(run_dir):
    """`(labels, {scale: P(positive) per test bag})` of one run folder."""
    import numpy as np

    from mims_tf.runs.decision import load_scoring_model
    from mims_tf.runs.inputs import bag_source

    model, config, _, _ = load_scoring_model(run_dir)
    from mims_tf.data import read_manifest

    manifest = read_manifest(os.path.join(run_dir, "manifest.csv"), classes=config.data.classes, check_files=False)
    source = bag_source(config, manifest, "test")
    from mims_tf.data.transforms import prepare_instances

    plain = [prepare_instances(source.load(i), config.data.image_size, config.data.channels).numpy()
             for i in range(len(source))]
    scores = {}
    for scale in SCALES:
        bags = [rescale(bag, scale) for bag in plain]
        if len({b.shape for b in bags}) == 1:
            probabilities = model.predict(np.stack(bags), batch_size=32, verbose=0)
        else:
            probabilities = np.concatenate([model.predict(b[None], verbose=0) for b in bags])
        scores[scale] = probabilities[:, 1]
    return source.labels, scores


def main():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from mims_tf.stats.bootstrap import paired_auroc_difference_ci
    from mims_tf.utils import new_figure, save_figure, write_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "bench", "table1_breastmnist_224_frozen"))
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scale_shift_breastmnist_224"))
    args = parser.parse_args()
    presets = args.presets.split(",")
    scores, labels = {}, None
    for preset in presets:
        folders = sorted(glob.glob(os.path.join(args.runs, f"{preset}_s*")),
                         key=lambda p: int(re.search(r"_s(\d+)$", p).group(1)))
        folders = [f for f in folders if os.path.isfile(os.path.join(f, "best.keras"))]
        if not folders:
            print(f"{preset}: no finished runs in {args.runs}", flush=True)
            continue
        runs = []
        for folder in folders:
            labels, by_scale = score_run(folder)
            runs.append(by_scale)
            print(f"{os.path.basename(folder)}: " + ", ".join(
                f"{s:g}x {roc_auc_score(labels, by_scale[s]):.4f}" for s in SCALES), flush=True)
        scores[preset] = {s: np.stack([run[s] for run in runs]) for s in SCALES}
    done = list(scores)
    aurocs = {p: {s: [roc_auc_score(labels, run) for run in scores[p][s]] for s in SCALES} for p in done}
    header = "| preset | seeds | " + " | ".join(f"test {s:g}x" for s in SCALES) + " |"
    lines = ["# Scale shift on a real set (`benchmarks/scale_shift_real.py`)", "",
             f"Runs: `{args.runs}` (trained at 224 px); each test image rescaled about its "
             "centre by the factor and cropped or padded with black back to 224 x 224. AUROC on the same test bags "
             "at each scale: mean +- sd over seeds.", "", header, "|" + "---|" * (len(SCALES) + 2)]
    for p in done:
        lines.append(f"| `{p}` | {len(aurocs[p][1.0])} | " + " | ".join(
            f"{np.mean(aurocs[p][s]):.3f} +- {np.std(aurocs[p][s], ddof=1) if len(aurocs[p][s]) > 1 else 0:.3f}"
            for s in SCALES) + " |")
    if "mims" in done:
        lines += ["", "AUROC(mims) - AUROC(row), paired bootstrap 95 % interval (1,000 resamples, each drawing the "
                  "seeds and the test bags again). **beats** / **loses**: the interval excludes 0.", "", header,
                  "|" + "---|" * (len(SCALES) + 2)]
        counts = {s: {"beats": 0, "ties": 0, "loses": 0} for s in SCALES}
        for p in done:
            if p == "mims" or len(scores[p][1.0]) != len(scores["mims"][1.0]):
                continue
            cells = []
            for s in SCALES:
                difference, low, high = paired_auroc_difference_ci(labels, scores["mims"][s], scores[p][s],
                                                                   n_resamples=1000, resample_runs=True)
                verdict = "beats" if low > 0 else "loses" if high < 0 else "ties"
                counts[s][verdict] += 1
                cells.append(f"{difference:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}")
            lines.append(f"| `{p}` | {len(scores[p][1.0])} | " + " | ".join(cells) + " |")
        lines += [""] + [f"- test {s:g}x: mims beats {c['beats']}, ties {c['ties']}, loses to {c['loses']}"
                         for s, c in counts.items()]
    os.makedirs(args.out, exist_ok=True)
    write_text(os.path.join(args.out, "table.md"), "\n".join(lines) + "\n")
    figure = new_figure(7, 4.5)
    axis = figure.add_subplot(1, 1, 1)
    for p in done:
        axis.errorbar(SCALES, [np.mean(aurocs[p][s]) for s in SCALES],
                      yerr=[np.std(aurocs[p][s]) for s in SCALES], marker="o", capsize=3, label=p,
                      linewidth=2.5 if p == "mims" else 1.2)
    axis.set_xscale("log", base=2)
    axis.set_xticks(SCALES, [f"{s:g}x" for s in SCALES])
    axis.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    axis.set_xlabel("test image scale / training scale")
    axis.set_ylabel("test AUROC (mean +- sd over seeds)")
    axis.set_title("Scale shift on BreastMNIST at 224 px (frozen MobileNet 0.25)")
    axis.legend(fontsize=8, ncol=2)
    save_figure(figure, os.path.join(args.out, "auroc_by_scale.png"))
    print("\n".join(f"auroc_{p}_{s:g}x: {np.mean(aurocs[p][s]):.4f}" for p in done for s in SCALES))


if __name__ == "__main__":
    main()
