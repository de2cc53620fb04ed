"""`mims bench table1|table2`: every preset of the paper's table on one dataset, three seeds, one budget.

Each (preset, seed) result is appended to `results.csv` as soon as it is done,
so an interrupted bench continues where it stopped when the same command runs
again (`fresh=True` redoes everything). The Markdown table, the CSV and a plot
are rewritten after every result; their header records the exact command,
versions, machine, settings and wall time. Run folders (models) go to a
scratch folder, not into the results.
"""

import concurrent.futures
import csv
import multiprocessing
import os
import platform
import shlex
import sys
import time

import numpy as np

from mims_tf.models.config import PRESETS, TABLE1, TABLE2
from mims_tf.utils import atomic_open, atomic_path, import_keras_quietly, write_text

DATASETS = {
    # name: (path under the data root, TrainConfig settings of the dataset)
    "adrenalmnist3d": ("adrenalmnist3d/adrenalmnist3d.npz", {"instances": 16, "kernels": "crc"}),
    "kather-crc-msi": ("kather-crc-msi", {
        "bag_pattern": r"TCGA-\w\w-\w\w\w\w", "classes": ["MSS_JPEG", "MSIMUT_JPEG"], "instances": 8, "kernels": "crc",
    }),
    "breastmnist": ("breastmnist/breastmnist.npz", {"instances": 1, "kernels": "crc"}),
    "pneumoniamnist": ("pneumoniamnist/pneumoniamnist.npz", {"instances": 1, "kernels": "crc"}),
}
TABLES = {"table1": TABLE1, "table2": TABLE2}
# The paper's AUROC (ResNet-101 pretrained on ImageNet, private data), same row order; None: not reported.
PAPER = {
    "table1": (("Cirrus", "Spectralis", "MMD", "CRC-MSI", "Avg."), {
        "mi_pre": (0.574, 0.906, 0.956, 0.880, 0.829),
        "pyramid_mi_pre": (0.638, 0.371, 0.965, 0.855, 0.707),
        "mi_pre_conv": (0.972, 0.990, 0.961, 0.870, 0.948),
        "mims_noresizing": (0.956, 0.975, 0.961, 0.879, 0.942),
        "pyramid_mims": (0.848, 0.881, 0.966, 0.673, 0.842),
        "mi_pre_trident": (0.930, 1.000, 0.966, 0.897, 0.948),
        "si_cnn": (0.983, 1.000, 0.972, 0.880, 0.959),
        "featpyra_45": (0.959, 0.991, 0.970, 0.888, 0.952),
        "resnet34_scratch": (0.699, 0.734, 0.824, 0.667, 0.731),
        "mims": (0.986, 1.000, 0.972, 0.901, 0.965),
        "mims_patchcls": (0.874, 0.722, None, None, None),
        "mi_pre_conv_patchcls": (0.764, 0.227, None, None, None),
    }),
    "table2": (("Cirrus",), {
        "mims_mean": (0.829,), "mims_max": (0.960,), "mims_maxinst": (0.975,), "mims_top2": (0.980,),
        "mims_top3": (0.980,), "mims_top4": (0.986,), "mims_top5": (0.986,),
    }),
}
COLUMNS = ["preset", "seed", "val_auroc", "test_auroc", "test_accuracy", "seconds"]


def default_data_root():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "data"))


def read_results(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_csv(rows, path):
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _format_auroc(mean, std, n):
    """`0.850 +- 0.009`, or `0.850` for one seed (no spread)."""
    return f"{mean:.3f} +- {std:.3f}" if n > 1 else f"{mean:.3f}"


def mean_std(values):
    """(mean, sample std (0 for one value), count) of AUROC values over seeds."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)


def format_aurocs(values):
    """AUROC values over seeds as one table cell: `0.850 +- 0.009`, or `0.850` for one."""
    return _format_auroc(*mean_std(values))


def bench(table, dataset, out="benchmarks/results", work="runs/bench", seeds=(0, 1, 2), fresh=False,
          data_root=None, presets=None, command=None, tag=None, **settings):
    """Runs the presets of `table` on `dataset`; returns the results folder.

    A run that fails (bad settings for one preset, say) is reported and skipped;
    the others go on, and a RuntimeError naming the failed runs comes at the end.

    Args:
        table: "table1" or "table2".
        dataset: a name in `DATASETS`.
        out: where `<table>_<dataset>/` (results.csv, table.md, table.png) goes.
        work: scratch folder for the run folders.
        seeds: one run per preset and seed; seed s also fixes the split (where the data has none).
        fresh: redo results that exist.
        data_root: folder holding the datasets (default ../shared/data beside the repo).
        presets: a subset of the table's presets (default: all).
        command: the command line to record (default: this process's).
        tag: suffix of the results folder, `<table>_<dataset>_<tag>` (default: "pretrained" when
            `weights` is given, else none), so settings with different budgets never share a CSV.
        **settings: the budget, the same for every preset: `TrainConfig` fields
            (backbone, weights, backbone_kwargs, image_size, epochs, batch_size, learning_rate, ...).
    """
    if table not in TABLES:
        raise ValueError(f"Unknown table {table!r}; use table1 or table2")
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    relative, dataset_settings = DATASETS[dataset]
    data = os.path.join(data_root or default_data_root(), relative)
    if not os.path.exists(data):
        raise ValueError(f"{data}: dataset not found (pass the folder holding it as data_root / --data-root)")
    presets = list(presets or TABLES[table])
    if tag is None and settings.get("weights"):
        tag = "pretrained"
    name = f"{table}_{dataset}" + (f"_{tag}" if tag else "")
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    results_path = os.path.join(folder, "results.csv")
    rows = [] if fresh else read_results(results_path)
    done = {(r["preset"], int(r["seed"])) for r in rows}
    command = command or " ".join(shlex.quote(a) for a in ["mims", *sys.argv[1:]])
    started = time.time()
    failed = []
    for seed in seeds:
        for preset in presets:
            if (preset, seed) in done:
                continue
            options = {**dataset_settings, **settings}
            if preset == "resnet34_scratch":  # the from-scratch baseline keeps its own backbone
                options.update(backbone="resnet34", weights=None, backbone_kwargs={})
            run_dir = os.path.join(work, name, f"{preset}_s{seed}")
            print(f"[bench] {table} {dataset}: {preset} seed {seed}", file=sys.stderr, flush=True)
            start = time.time()
            values = dict(data=data, preset=preset, seed=seed, split_seed=seed, out=run_dir,
                          checkpoint_steps=10**6, **options)
            # Each run in a fresh process: memory (cached bags, TF state) goes back after every run, and a
            # crashed or killed run costs only itself.
            try:
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    summary, result = pool.submit(_train_and_evaluate, values).result()
            except (ValueError, RuntimeError, OSError, concurrent.futures.process.BrokenProcessPool) as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                print(f"[bench] {preset} seed {seed} failed: {message}", file=sys.stderr, flush=True)
                failed.append(f"{preset} seed {seed} ({message})")
                continue
            rows.append({"preset": preset, "seed": seed, "val_auroc": f"{summary['best_val_auroc']:.4f}",
                         "test_auroc": f"{result['auroc']:.4f}", "test_accuracy": f"{result['accuracy']:.4f}",
                         "seconds": f"{time.time() - start:.0f}"})
            _write_csv(rows, results_path)
            record_bag_size(folder, os.path.join(work, name))
            write_report(folder, table, dataset, rows, presets, command, settings, time.time() - started, len(seeds))
            write_summary(out)
    record_bag_size(folder, os.path.join(work, name))
    write_report(folder, table, dataset, rows, presets, command, settings, time.time() - started, len(seeds))
    write_summary(out)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed, the others are in {folder}: {'; '.join(failed)}")
    return folder


def _train_and_evaluate(values):
    """One (preset, seed) run: trains, evaluates the best model on the test split (in a child process)."""

    import_keras_quietly()
    from mims_tf.train.config import TrainConfig
    from mims_tf.train.evaluate import evaluate_run
    from mims_tf.train.run import train

    summary = train(TrainConfig(**values), overwrite=True, verbose=0)
    result = evaluate_run(values["out"], threshold=None)
    return summary, {k: result[k] for k in ("auroc", "accuracy")}


def record_bag_size(folder, run_folders):
    """`<folder>/bag_size.csv`: per seed, the test AUROC of the number of instances per bag alone.

    A baseline with no model: where bag size differs by class (Kather: MSI patients have more tiles),
    any pooling that grows with bag size gets this signal for free. Seeds are read from the run folders'
    manifests (`<run_folders>/<preset>_s<seed>/manifest.csv`; every preset of a seed shares the split).
    """
    import glob
    import re

    from sklearn.metrics import roc_auc_score

    from mims_tf.data import read_manifest
    from mims_tf.train.config import load_config

    path = os.path.join(folder, "bag_size.csv")
    rows = {int(r["seed"]): r for r in read_results(path)}
    for manifest_path in sorted(glob.glob(os.path.join(run_folders, "*_s*", "manifest.csv"))):
        seed = int(re.search(r"_s(\d+)$", os.path.dirname(manifest_path)).group(1))
        if seed in rows:
            continue
        config = load_config(os.path.join(os.path.dirname(manifest_path), "config.yaml"))
        manifest = read_manifest(manifest_path, classes=config.classes, check_files=False)  # classes in the run's order
        counts, labels = {}, {}
        for row in manifest.rows:
            if row["split"] == "test":
                counts[row["bag"]] = counts.get(row["bag"], 0) + 1
                labels[row["bag"]] = manifest.classes.index(row["label"])
        bags = sorted(counts)
        y = [labels[b] for b in bags]
        if len(set(y)) < 2:
            continue
        sizes = [counts[b] for b in bags]
        rows[seed] = {"seed": seed, "test_bags": len(bags), "min_size": min(sizes), "max_size": max(sizes),
                      "auroc": f"{roc_auc_score(y, sizes):.4f}"}
    if rows:
        with atomic_open(path) as f:
            writer = csv.DictWriter(f, fieldnames=["seed", "test_bags", "min_size", "max_size", "auroc"])
            writer.writeheader()
            writer.writerows(rows[seed] for seed in sorted(rows))
    return [float(rows[seed]["auroc"]) for seed in sorted(rows)]


def _bag_size_cell(folder):
    """(AUROC cell, whether every test bag has one size) from `<folder>/bag_size.csv`; (None, None) if absent."""
    rows = read_results(os.path.join(folder, "bag_size.csv"))
    if not rows:
        return None, None
    return format_aurocs([float(r["auroc"]) for r in rows]), all(r["min_size"] == r["max_size"] for r in rows)


def summarize(rows, presets):
    """{preset: (mean, std, n)} of the test AUROC."""
    summary = {}
    for preset in presets:
        values = [float(r["test_auroc"]) for r in rows if r["preset"] == preset]
        if values:
            summary[preset] = mean_std(values)
    return summary


def write_report(folder, table, dataset, rows, presets, command, settings, seconds, n_seeds=3):
    """table.md and table.png from the results so far."""
    import keras
    import tensorflow as tf

    import mims_tf

    summary = summarize(rows, presets)
    total = sum(float(r["seconds"]) for r in rows)
    lines = [
        f"# {table} on {dataset}",
        "",
        f"- command: `{command}`",
        f"- versions: mims-tf {mims_tf.__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
        f"- budget, the same for every preset: backbone {settings.get('backbone', 'tiny')} (weights: "
        f"{settings.get('weights') or 'none, from scratch'}; resnet34_scratch: ResNet-34 from scratch), "
        f"instances {settings.get('instances', DATASETS[dataset][1].get('instances'))}, kernels {DATASETS[dataset][1].get('kernels')}, {settings}",
        f"- runs done: {len(rows)} of {len(presets) * n_seeds} ({n_seeds} seeds); training and evaluation time {total / 60:.1f} min",
        "- metric: bag-level test AUROC (scikit-learn), mean +- std over seeds",
        "",
        "| method | paper name | test AUROC | seeds |",
        "|---|---|---|---|",
    ]
    for preset in presets:
        if preset in summary:
            mean, std, n = summary[preset]
            lines.append(f"| `{preset}` | {PRESETS[preset][0]} | {_format_auroc(mean, std, n)} | {n} |")
        else:
            lines.append(f"| `{preset}` | {PRESETS[preset][0]} | not run yet | 0 |")
    bag_size_cell, one_size = _bag_size_cell(folder)
    if bag_size_cell is not None:
        lines += ["", f"Reference with no model: the number of instances per test bag alone scores AUROC {bag_size_cell}"
                  + (" (all bags have one size)." if one_size else
                     ". Bag size differs by class here, so pooling that grows with bag size (max, top-k over "
                     "more candidates) gets or loses this signal for free.")]
    write_text(os.path.join(folder, "table.md"), "\n".join(lines) + "\n")
    _plot(os.path.join(folder, "table.png"), summary, f"{table} on {dataset}")


def write_summary(out="benchmarks/results"):
    """`<out>/summary.md`: every results folder of `out` side by side with the paper, in the paper's row order.

    Returns the Markdown text. Our columns are the folders `<table>_<dataset>[_<tag>]`; the best mean of each
    column is in bold. Each folder's table.md gives its command and budget.
    """
    names = sorted(os.listdir(out)) if os.path.isdir(out) else []
    text = ["# Paper tables on public data: summary", "",
            "Bag-level test AUROC, mean +- std over 3 seeds (`mims bench`). Paper: ResNet-101 pretrained on "
            "ImageNet, private data, mean of 3 runs. Each column's folder (its table.md) gives the command, "
            "budget, versions and machine. Best mean of each column in bold.", ""]
    for table, presets in TABLES.items():
        folders = [n for n in names if n.startswith(f"{table}_") and os.path.isfile(os.path.join(out, n, "results.csv"))]
        paper_columns, paper = PAPER[table]
        summaries = {n: summarize(read_results(os.path.join(out, n, "results.csv")), presets) for n in folders}
        best = {n: max((v[0] for v in summary.values()), default=None) for n, summary in summaries.items()}
        text += [f"## Table {table[-1]}", "",
                 "| method | " + " | ".join(f"paper {c}" for c in paper_columns) + " | "
                 + " | ".join(f"`{n[len(table) + 1:]}`" for n in folders) + " |",
                 "|---" * (1 + len(paper_columns) + len(folders)) + "|"]
        for preset in presets:
            cells = ["/" if v is None else f"{v:.3f}" for v in paper[preset]]
            for n in folders:
                if preset not in summaries[n]:
                    cells.append("not run")
                    continue
                mean, std, count = summaries[n][preset]
                cell = _format_auroc(mean, std, count) + (
                    "" if count == 3 else f" ({count} seed{'s' if count > 1 else ''})")
                cells.append(f"**{cell}**" if mean == best[n] else cell)
            text.append(f"| {PRESETS[preset][0]} | " + " | ".join(cells) + " |")
        bag_size = [_bag_size_cell(os.path.join(out, n))[0] or "not computed" for n in folders]
        text.append("| *bag size alone, no model* | " + " | ".join("/" for _ in paper_columns) + " | "
                    + " | ".join(bag_size) + " |")
        text.append("")
    write_text(os.path.join(out, "summary.md"), "\n".join(text))
    return "\n".join(text)


def _plot(path, summary, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not summary:
        return
    names = list(summary)
    figure, axis = plt.subplots(figsize=(max(4, 0.6 * len(names) + 1), 3.5), dpi=110)
    axis.bar(range(len(names)), [summary[n][0] for n in names], yerr=[summary[n][1] for n in names], capsize=3)
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("test AUROC")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp)
    plt.close(figure)
