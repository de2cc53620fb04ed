"""`bench`: every preset of one of the paper's tables on one dataset, several seeds, one budget.

Each (preset, seed) result is appended to `results.csv` as soon as it is done,
so an interrupted bench continues where it stopped when the same command runs
again (`fresh=True` redoes everything). The Markdown table, the CSV and a plot
are rewritten after every result; their header records the exact command,
versions, machine, settings and wall time. Run folders (models) go to a
scratch folder, not into the results. Progress goes to the `mims_tf` logger.
"""

import concurrent.futures
import csv
import logging
import multiprocessing
import os
import time

from mims_tf.bench.report import header_lines, read_results, write_report, write_results, write_scores, write_summary
from mims_tf.bench.tables import DATASETS, TABLES
from mims_tf.utils import Progress, atomic_open, check_choice, import_keras_quietly, read_json, write_json

logger = logging.getLogger("mims_tf")


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
        data_root: folder holding the datasets (e.g. `../shared/data`).
        presets: a subset of the table's presets (default: all).
        command: the command line to record in table.md (default: the Python call).
        tag: suffix of the results folder, `<table>_<dataset>_<tag>` (default: "pretrained" when
            `weights` is given, else none), so settings with different budgets never share a CSV.
        **settings: the budget, the same for every preset: `RunConfig` keys, flat
            (backbone, weights, backbone_kwargs, image_size, epochs, batch_size, learning_rate, ...).
    """
    check_choice("table", table, list(TABLES))
    check_choice("dataset", dataset, list(DATASETS))
    data, dataset_settings = dataset_path(data_root, dataset)
    presets = list(presets or TABLES[table])
    _check_settings(data, presets, dataset_settings, settings)
    if tag is None and settings.get("weights"):
        tag = "pretrained"
    name = results_name(table, dataset, tag)
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    budget = _check_budget(folder, settings, fresh)
    results_path = os.path.join(folder, "results.csv")
    rows = [] if fresh else read_results(results_path)
    done = {(r["preset"], int(r["seed"])) for r in rows}
    command = command or f"mims_tf.bench.bench({table!r}, {dataset!r}, **{settings!r})"
    failed = []
    progress = Progress(f"[bench] {name}: runs", sum((p, s) not in done for s in seeds for p in presets), interval=0)
    for seed in seeds:
        for preset in presets:
            if (preset, seed) in done:
                continue
            options = run_options(preset, dataset_settings, settings)
            run_dir = os.path.join(work, name, f"{preset}_s{seed}")
            logger.info("[bench] %s %s: %s seed %s", table, dataset, preset, seed)
            start = time.time()
            try:
                summary, result = run_in_child(data, preset, seed, run_dir, options)
            except (ValueError, RuntimeError, OSError, concurrent.futures.process.BrokenProcessPool) as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                logger.warning("[bench] %s seed %s failed: %s", preset, seed, message)
                failed.append(f"{preset} seed {seed} ({message})")
                progress.advance()
                if not rows and len(failed) >= 2 and all(f.endswith(f"({message})") for f in failed):
                    raise RuntimeError(f"every run so far failed alike, so the budget fits none: {message}")
                continue
            progress.advance()
            write_scores(folder, preset, seed, result["bags"], result["labels"], result["scores"])
            rows.append({"preset": preset, "seed": seed, "val_auroc": f"{summary['best_val_auroc']:.4f}",
                         "test_auroc": f"{result['auroc']:.4f}", "test_accuracy": f"{result['accuracy']:.4f}",
                         "seconds": f"{time.time() - start:.0f}", "environment": summary["environment"]})
            write_results(rows, results_path)
            write_json(os.path.join(folder, "settings.json"), budget)  # with its first result, not before
            record_bag_size(folder, os.path.join(work, name))
            write_report(folder, table, dataset, rows, presets,
                         header_lines(table, dataset, rows, presets, command, settings, len(seeds)))
            write_summary(out)
    record_bag_size(folder, os.path.join(work, name))
    write_report(folder, table, dataset, rows, presets,
                 header_lines(table, dataset, rows, presets, command, settings, len(seeds)))
    write_summary(out)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed, the others are in {folder}: {'; '.join(failed)}")
    return folder


def results_name(table, dataset, tag=None):
    """`<table>_<dataset>[_folds<K>][_<tag>]`: a data set run as K folds (its settings say so) never shares a
    results folder with runs of one split."""
    folds = DATASETS[dataset][1].get("folds")
    return f"{table}_{dataset}" + (f"_folds{folds}" if folds else "") + (f"_{tag}" if tag else "")


def dataset_path(data_root, dataset):
    """`(path, the dataset's run settings)` of `dataset` under `data_root`; raises ValueError where it is not there."""
    relative, dataset_settings = DATASETS[dataset]
    if data_root is None:
        raise ValueError("`data_root` is required: the folder holding the datasets")
    data = os.path.join(data_root, relative)
    if not os.path.exists(data):
        raise ValueError(f"{data_root}: data set {dataset} not found (expected {data})")
    return data, dataset_settings


def recorded_settings(folder):
    """The budget the rows of a results folder were made with, or None where it is not recorded.

    `settings.json` (written with the first result) records it; folders from before it have it at the end of
    table.md's budget line (the settings as given, a Python dict). Where the cache folder was is not part of it.
    """
    import ast
    import json

    path = os.path.join(folder, "settings.json")
    if os.path.isfile(path):
        settings = read_json(path)
    else:
        table = os.path.join(folder, "table.md")
        line = next((line for line in (open(table, encoding="utf-8").read().splitlines() if os.path.isfile(table)
                                       else []) if line.startswith("- budget, the same for every preset:")), None)
        if line is None or "{" not in line:
            return None
        try:
            settings = ast.literal_eval(line[line.index("{"):])
        except (ValueError, SyntaxError):
            return None
    if not isinstance(settings, dict):
        return None
    return json.loads(json.dumps({k: v for k, v in settings.items() if k != "cache_dir"}))  # tuples as lists


def _check_settings(data, presets, dataset_settings, settings):
    """Fails at once, before anything is written, where the budget makes a run's config invalid (a bad option
    would otherwise fail every run in turn, and its settings.json would block the corrected command)."""
    from mims_tf.models.catalog import check_weights_file
    from mims_tf.runs.config import RunConfig

    check_weights_file(settings.get("weights"))  # a run's config need not hold it
    for preset in presets:
        RunConfig.from_dict(_run_values(data, preset, 0, os.path.join("runs", "bench-check"),
                                        run_options(preset, dataset_settings, settings)))


def _run_values(data, preset, seed, run_dir, options):
    """The flat `RunConfig` values of one (preset, seed) run."""
    return dict(data=data, preset=preset, seed=seed, split_seed=seed, out=run_dir, checkpoint_steps=10**6, **options)


def _check_budget(folder, settings, fresh):
    """`<folder>/settings.json` holds the budget of its results (written with them); another budget may not add
    rows to them. Returns this budget."""
    import json

    path = os.path.join(folder, "settings.json")
    current = json.loads(json.dumps({k: v for k, v in settings.items() if k != "cache_dir"}))  # where, not what
    if os.path.isfile(path) and not fresh:
        stored = read_json(path)
        if stored != current:
            raise ValueError(f"{folder}: its results were made with settings {stored}, not {current}; "
                             "redo them (fresh=True) or give these results their own tag")
    return current


def run_options(preset, dataset_settings, settings):
    """The flat run settings of one preset: the dataset's, the budget, and resnet34_scratch's own backbone."""
    options = {**dataset_settings, **settings}
    if preset == "resnet34_scratch":  # the from-scratch baseline keeps its own backbone, trained (not frozen)
        options.update(backbone="resnet34", weights=None, backbone_kwargs={})
        options.pop("freeze_backbone", None)
    return options


def verify(table, dataset, count, out="benchmarks/results", work="runs/bench", data_root=None, tag=None, seed=0,
           **settings):
    """Reruns `count` finished rows of a results folder and compares each with its committed test AUROC.

    Rows are drawn reproducibly (`seed`) and rerun with the budget recorded with them (`recorded_settings`); a
    folder that records none is refused. `settings` may add `cache_dir` and move `weights` (a file of that name
    elsewhere); any other setting must equal the recorded one (ValueError otherwise).
    A verdict per row: `identical` (to the 4 decimals stored), `within seed spread` (the difference is at
    most the preset's sample standard deviation over seeds in the table), or `outside seed spread`.

    Returns:
        A list of `{"preset", "seed", "committed", "rerun", "difference", "spread", "verdict", "environment",
        "committed_environment", "settings"}` (`settings`: the budget rerun).
    """
    import numpy as np

    from mims_tf.models.catalog import check_weights_file
    from mims_tf.stats.metrics import mean_and_spread

    check_choice("table", table, list(TABLES))
    check_choice("dataset", dataset, list(DATASETS))
    data, dataset_settings = dataset_path(data_root, dataset)
    if tag is None and settings.get("weights"):
        tag = "pretrained"
    name = results_name(table, dataset, tag)
    single = f"{table}_{dataset}" + (f"_{tag}" if tag else "")
    if dataset_settings.get("folds") and not os.path.isdir(os.path.join(out, name)) and os.path.isdir(
            os.path.join(out, single)):  # rows made on one split, before the data set was run as folds
        name, dataset_settings = single, {k: v for k, v in dataset_settings.items() if k != "folds"}
    folder = os.path.join(out, name)
    rows = read_results(os.path.join(folder, "results.csv"))
    if not rows:
        raise ValueError(f"{os.path.join(folder, 'results.csv')}: no finished rows to verify")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"`count` must be a positive integer. Received: count={count!r}")
    settings = _recorded_budget(folder, settings)
    check_weights_file(settings.get("weights"))
    picked = np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False)
    checks = []
    for index in sorted(int(i) for i in picked):
        row = rows[index]
        preset, run_seed = row["preset"], int(row["seed"])
        values = [float(r["test_auroc"]) for r in rows if r["preset"] == preset]
        _, spread, _ = mean_and_spread(values)
        logger.info("[verify] %s %s: %s seed %s", table, dataset, preset, run_seed)
        summary, result = run_in_child(data, preset, run_seed,
                                       os.path.join(work, f"{name}_verify", f"{preset}_s{run_seed}"),
                                       run_options(preset, dataset_settings, settings))
        committed, rerun = float(row["test_auroc"]), round(float(result["auroc"]), 4)
        difference = rerun - committed
        verdict = ("identical" if abs(difference) < 5e-5 else
                   "within seed spread" if abs(difference) <= spread else "outside seed spread")
        checks.append({"preset": preset, "seed": run_seed, "committed": committed, "rerun": rerun,
                       "difference": difference, "spread": spread, "verdict": verdict,
                       "committed_environment": row.get("environment") or "not recorded",
                       "environment": summary["environment"], "settings": settings})
    return checks


def _recorded_budget(folder, settings):
    """The budget to rerun `folder`'s rows with: the recorded one, with `settings`' cache folder and weights file
    (where the recorded one is a file: the same file elsewhere); other settings must equal the recorded ones."""
    import json

    recorded = recorded_settings(folder)
    if recorded is None:
        raise ValueError(f"{folder}: no settings are recorded with these results (settings.json, or the budget "
                         "line of table.md), so they cannot be rerun as they were made")
    given = json.loads(json.dumps(settings))
    moved = {}
    if isinstance(recorded.get("weights"), str) and recorded["weights"] != "imagenet" and isinstance(
            given.get("weights"), str) and os.path.basename(given["weights"]) == os.path.basename(recorded["weights"]):
        moved["weights"] = given.pop("weights")
    differ = sorted(key for key, value in given.items() if key != "cache_dir" and recorded.get(key) != value)
    if differ:
        raise ValueError(f"{folder}: its rows were made with {recorded}; a rerun uses those settings (leave the "
                         f"others out). Received: {', '.join(f'{key}={settings[key]!r}' for key in differ)}")
    return {**recorded, **moved, **({"cache_dir": settings["cache_dir"]} if settings.get("cache_dir") else {})}


def run_in_child(data, preset, seed, run_dir, options):
    """Trains and evaluates one (preset, seed) in a fresh process: memory (cached bags, TF state) goes back
    after every run, and a crashed or killed run costs only itself. Returns `(summary, test result)`."""
    values = _run_values(data, preset, seed, run_dir, options)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_train_and_evaluate, values).result()


def _train_and_evaluate(values):
    """One (preset, seed) run: trains, evaluates the best model on the test split (in a child process). An error
    goes back to the parent as itself, or (one that does not survive pickling) as a RuntimeError of its line."""
    try:
        return _run(values)
    except Exception as error:
        raise _portable(error) from None


def _portable(error):
    """`error` where it survives a pickle round trip (the way back from the child process), else a RuntimeError
    with its first line: an error the parent cannot unpickle breaks the pool ("terminated abruptly")."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any failure to cross
        text = str(error).splitlines()
        return RuntimeError(text[0] if text and text[0] else type(error).__name__)


def _run(values):
    from mims_tf.runs.environment import disable_onednn  # no TensorFlow

    if values.get("deterministic"):
        disable_onednn()
    import_keras_quietly()
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.evaluate import evaluate_run
    from mims_tf.runs.fit import train

    summary = train(RunConfig.from_dict(values), overwrite=True, verbose=0)
    result = evaluate_run(values["out"], threshold=None)
    summary = {k: summary[k] for k in ("best_val_auroc", "best_epoch", "environment")}
    per_bag = {"bags": list(result["bag_ids"]), "labels": [int(v) for v in result["labels"]],
               "scores": [float(v) for v in result["scores"]]}
    return summary, {k: result[k] for k in ("auroc", "accuracy")} | per_bag


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
    from mims_tf.runs.config import load_config

    path = os.path.join(folder, "bag_size.csv")
    rows = {int(r["seed"]): r for r in read_results(path)}
    for manifest_path in sorted(glob.glob(os.path.join(run_folders, "*_s*", "manifest.csv"))):
        seed = int(re.search(r"_s(\d+)$", os.path.dirname(manifest_path)).group(1))
        if seed in rows:
            continue
        config = load_config(os.path.join(os.path.dirname(manifest_path), "config.yaml"))
        # classes in the run's order
        manifest = read_manifest(manifest_path, classes=config.data.classes, check_files=False)
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


