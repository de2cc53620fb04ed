"""The bench's reports: `results.csv`, `table.md`, `table.png` per table, and `summary.md` beside the paper.

Everything here reads and writes files only; `regenerate` rewrites a results folder's reports from its
`results.csv` (and the header of its existing `table.md`, which records how the runs were made).
"""

import csv
import os
import platform

import numpy as np

from mims_tf.bench.tables import DATASETS, PAPER, TABLES
from mims_tf.models.config import paper_name
from mims_tf.stats.metrics import mean_and_spread
from mims_tf.utils import atomic_open, new_figure, save_figure, write_text

COLUMNS = ["preset", "seed", "val_auroc", "test_auroc", "test_accuracy", "seconds", "environment"]


def read_results(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_results(rows, path):
    """Writes the bench's `results.csv` (one row per preset and seed), atomically."""
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _format_auroc(mean, std, n):
    """`0.850 +- 0.009`, or `0.850` for one seed (no spread)."""
    return f"{mean:.3f} +- {std:.3f}" if n > 1 else f"{mean:.3f}"


def format_aurocs(values):
    """AUROC values over seeds as one table cell: `0.850 +- 0.009`, or `0.850` for one."""
    return _format_auroc(*mean_and_spread(values))


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
            summary[preset] = mean_and_spread(values)
    return summary


def header_lines(table, dataset, rows, presets, command, settings, n_seeds=3):
    """The header of table.md: how the runs were made (command, versions, machine, budget, progress)."""
    import keras
    import tensorflow as tf

    import mims_tf

    total = sum(float(r["seconds"]) for r in rows)
    return [
        f"# {table} on {dataset}",
        "",
        f"- command: `{command}`",
        f"- versions: mims-tf {mims_tf.__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
        f"- budget, the same for every preset: backbone {settings.get('backbone', 'tiny')} (weights: "
        f"{settings.get('weights') or 'none, from scratch'}; resnet34_scratch: ResNet-34 from scratch), "
        f"instances {settings.get('instances', DATASETS[dataset][1].get('instances'))}, "
        f"kernels {DATASETS[dataset][1].get('kernels')}, {settings}",
        f"- runs done: {len(rows)} of {len(presets) * n_seeds} ({n_seeds} seeds); "
        f"training and evaluation time {total / 60:.1f} min",
        "- metric: bag-level test AUROC (scikit-learn), mean +- std over seeds",
    ]


def body_lines(folder, rows, presets):
    """The table of table.md (one row per preset) and the bag-size reference, from the results."""
    summary = summarize(rows, presets)
    lines = ["", "| method | paper name | test AUROC | seeds |", "|---|---|---|---|"]
    for preset in presets:
        if preset in summary:
            mean, std, n = summary[preset]
            lines.append(f"| `{preset}` | {paper_name(preset)} | {_format_auroc(mean, std, n)} | {n} |")
        else:
            lines.append(f"| `{preset}` | {paper_name(preset)} | not run yet | 0 |")
    lines += provenance_lines(rows, presets)
    bag_size_cell, one_size = _bag_size_cell(folder)
    if bag_size_cell is not None:
        lines += ["", "Reference with no model: the number of instances per test bag alone scores "
                      f"AUROC {bag_size_cell}"
                  + (" (all bags have one size)." if one_size else
                     ". Bag size differs by class here, so pooling that grows with bag size (max, top-k over "
                     "more candidates) gets or loses this signal for free.")]
    return lines


def provenance_lines(rows, presets):
    """Which code and machine each row came from (`environment` column); nothing for rows that do not say.

    A preset whose seeds ran on different machines or commits is named: its spread then mixes the seed's
    effect with the machine's (single-seed AUROC moved by 0.05 to 0.08 between two CPUs).
    """
    if not any(r.get("environment") for r in rows):
        return []
    counts = {}
    for r in rows:
        counts[r.get("environment") or "not recorded"] = counts.get(r.get("environment") or "not recorded", 0) + 1
    lines = ["", "Code and machine of the rows (`results.csv`, column `environment`):", ""]
    lines += [f"- {name}: {count} row{'s' if count > 1 else ''}" for name, count in sorted(counts.items())]
    mixed = [p for p in presets if len({r.get("environment") or "not recorded" for r in rows if r["preset"] == p}) > 1]
    if len(counts) > 1:
        lines += ["", "**Rows from more than one machine or commit.** "
                  + (f"Presets whose seeds mix them: {', '.join(f'`{p}`' for p in mixed)}." if mixed else
                     "Each preset's seeds share one.")]
    return lines


REFERENCE = "mims"  # the row every other row is compared with
# Table 2 varies MIMS's pooling; its row `mims_top5` is MIMS itself (top-k with the preset's default k = 5).
POOLING_REFERENCE = "mims_top5"


def reference_of(presets):
    """The row a table's other rows are compared with: `mims`, or in Table 2 its twin `mims_top5`."""
    return REFERENCE if REFERENCE in presets or POOLING_REFERENCE not in presets else POOLING_REFERENCE
PAIRED_RESAMPLES = 1000


def write_scores(folder, preset, seed, bags, labels, scores):
    """`<folder>/scores/<preset>_s<seed>.csv`: one run's test bags, labels and P(positive), for paired tests."""
    os.makedirs(os.path.join(folder, "scores"), exist_ok=True)
    with atomic_open(os.path.join(folder, "scores", f"{preset}_s{seed}.csv")) as f:
        writer = csv.writer(f)
        writer.writerow(["bag", "label", "score"])
        writer.writerows([b, int(y), f"{p:.6f}"] for b, y, p in zip(bags, labels, scores))


def _read_scores(folder, preset, seed):
    path = os.path.join(folder, "scores", f"{preset}_s{seed}.csv")
    if not os.path.isfile(path):
        return None
    rows = read_results(path)
    return ([r["bag"] for r in rows], np.array([int(r["label"]) for r in rows]),
            np.array([float(r["score"]) for r in rows]))


def patients(bags):
    """The TCGA patient of every bag name, or None unless each names one: bags that are tiles of one
    patient are resampled together (they are not independent)."""
    import re

    from mims_tf.data.manifest import TCGA_PATIENT

    found = [re.search(TCGA_PATIENT, bag, re.IGNORECASE) for bag in bags]
    if not all(found):
        return None
    names = [m.group(0).upper() for m in found]
    return names if len(set(names)) < len(names) else None  # one bag per patient: bags are the patients


def paired_comparisons(folder, rows, presets):
    """`{preset: (difference, low, high, verdict, seeds, how)}`: AUROC(reference) - AUROC(preset), paired bootstrap
    (`reference_of`: `mims`, or in Table 2 its twin `mims_top5`).

    Over the seeds both have scores for (`scores/`): each seed's AUROC difference on that seed's test bags,
    averaged over seeds; the 95 % interval resamples the seeds (the training's spread, which another machine
    redraws) and the test bags (jointly over seeds where they share one test set, apart where each seed has its
    own split), or their patients where bags are tiles of patients. Verdict: `beats` / `loses` where the interval
    excludes 0, else `ties`. Empty where `mims` or the scores are missing (tables made before scores were kept).
    """
    from mims_tf.stats.bootstrap import paired_auroc_difference_ci, seeds_paired_difference_ci

    name = reference_of(presets)
    seeds = sorted({int(r["seed"]) for r in rows if r["preset"] == name})
    reference = {s: _read_scores(folder, name, s) for s in seeds}
    found = {}
    for preset in presets:
        if preset == name:
            continue
        pairs = [(reference[s], _read_scores(folder, preset, s)) for s in seeds if reference[s] is not None]
        pairs = [(a, b) for a, b in pairs if b is not None and a[0] == b[0]]
        if not pairs:
            continue
        groups = [patients(a[0]) for a, _ in pairs]
        if any(g is None for g in groups):  # patients for every seed, or bags for every seed
            groups = [None] * len(groups)
        by = "patients" if groups[0] is not None else "bags"
        if all(a[0] == pairs[0][0][0] for a, _ in pairs):  # one test set for every seed
            how = f"one test set, {by} resampled jointly"
            value = paired_auroc_difference_ci(pairs[0][0][1], [a[2] for a, _ in pairs], [b[2] for _, b in pairs],
                                               n_resamples=PAIRED_RESAMPLES, groups=groups[0], resample_runs=True)
        else:
            how = f"each seed its own test split, {by} resampled apart"
            value = seeds_paired_difference_ci([(a[1], a[2], b[2]) for a, b in pairs], n_resamples=PAIRED_RESAMPLES,
                                               groups=None if groups[0] is None else groups, resample_runs=True)
        verdict = "beats" if value[1] > 0 else "loses" if value[2] < 0 else "ties"
        found[preset] = (*value, verdict, len(pairs), how)
    return found


def paired_lines(comparisons, reference=REFERENCE):
    """The paired comparison section of table.md (`reference`: the row compared with)."""
    if not comparisons:
        return []
    twin = "" if reference == REFERENCE else f" (MIMS itself: the `{REFERENCE}` preset's pooling, top-k with k = 5)"
    how = sorted({c[5] for c in comparisons.values()})
    lines = ["", f"Paired comparison with `{reference}`{twin}: AUROC({reference}) - AUROC(row), the mean over seeds "
             f"of each seed's difference on the same test bags, with its bootstrap 95 % interval "
             f"({PAIRED_RESAMPLES:,} resamples, each drawing the seeds and the test bags again; {'; '.join(how)}). "
             f"`{reference}` **beats** "
             "or **loses to** a row where the interval excludes 0, else they tie. Resampling the seeds puts the "
             "training's own spread into the interval (a rerun on another CPU moved single runs as much as a new "
             "seed does); with 3 seeds it is coarse.", "",
             f"| row | seeds | AUROC({reference}) - AUROC(row) | 95 % interval | verdict |", "|---|---|---|---|---|"]
    for preset, (difference, low, high, verdict, seeds, _) in comparisons.items():
        lines.append(f"| `{preset}` | {seeds} | {difference:+.3f} | [{low:+.3f}, {high:+.3f}] | {verdict} |")
    return lines


def write_report(folder, table, dataset, rows, presets, header):
    """table.md (`header` lines, then the table) and table.png from the results so far."""
    body = body_lines(folder, rows, presets) + paired_lines(paired_comparisons(folder, rows, presets),
                                                            reference_of(presets))
    write_text(os.path.join(folder, "table.md"), "\n".join([*header, *body]) + "\n")
    _plot(os.path.join(folder, "table.png"), summarize(rows, presets), f"{table} on {dataset}")


def regenerate(folder):
    """Rewrites `<folder>/table.md` and `table.png` from its `results.csv`, keeping table.md's header.

    The folder is named `<table>_<dataset>[_<tag>]`; the header (command, versions, machine, budget) is
    the record of how the runs were made and is kept as written.
    """
    name = os.path.basename(os.path.normpath(folder))
    table, _, rest = name.partition("_")
    dataset = next((d for d in sorted(DATASETS, key=len, reverse=True) if rest == d or rest.startswith(d + "_")), None)
    if table not in TABLES or dataset is None:
        raise ValueError(f"{folder}: not a bench results folder (<table>_<dataset>[_<tag>])")
    with open(os.path.join(folder, "table.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = lines[:next(i for i, line in enumerate(lines) if line.startswith("- metric:")) + 1]
    write_report(folder, table, dataset, read_results(os.path.join(folder, "results.csv")), TABLES[table], header)


def fixed_bag_cells(folder):
    """`{preset: (instances, "mean +- std")}` from `<folder>/fixed_bags_<N>.md` (`benchmarks/fixed_bag_size.py`:
    the runs scored on test bags of N instances each), or `{}`. Where bag size differs by class (Kather's
    patients), that figure, not the whole-bag one, says what a model saw."""
    import glob
    import re

    found = {}
    for path in glob.glob(os.path.join(folder, "fixed_bags_*.md")):
        match = re.search(r"fixed_bags_(\d+)\.md$", path)
        if match:
            found[int(match.group(1))] = path
    cells = {}
    if not found:
        return cells
    instances = min(found)  # several sizes: the smallest, the strictest test of what a model saw
    with open(found[instances], encoding="utf-8") as f:
        for line in f:
            parts = [p.strip() for p in line.strip().strip("|").split("|")]
            if len(parts) == 5 and parts[0].startswith("`") and re.fullmatch(r"\d\.\d+ \+- \d\.\d+", parts[3]):
                cells[parts[0].strip("`")] = (instances, parts[3])
    return cells


def write_summary(out="benchmarks/results"):
    """`<out>/summary.md`: every results folder of `out` side by side with the paper, in the paper's row order.

    Returns the Markdown text. Our columns are the folders `<table>_<dataset>[_<tag>]`; the best mean of each
    column is in bold. Each folder's table.md gives its command and budget.
    """
    names = sorted(os.listdir(out)) if os.path.isdir(out) else []
    text = ["# Paper tables on public data: summary", "",
            "Bag-level test AUROC, mean +- std over 3 seeds (`mims bench`). Paper: ResNet-101 pretrained on "
            "ImageNet, private data, mean of 3 runs. Each column's folder (its table.md) gives the command, "
            "budget, versions and machine. Best mean of each column in bold. Where a folder holds a fixed-bag-size "
            "evaluation (`benchmarks/fixed_bag_size.py`; Kather's patient bags, whose size gives the class away), "
            "its figure leads the cell and the whole-bag one follows in brackets.", ""]
    for table, presets in TABLES.items():
        folders = [n for n in names
                   if n.startswith(f"{table}_") and os.path.isfile(os.path.join(out, n, "results.csv"))]
        paper_columns, paper = PAPER[table]
        summaries = {n: summarize(read_results(os.path.join(out, n, "results.csv")), presets) for n in folders}
        best = {n: max((v[0] for v in summary.values()), default=None) for n, summary in summaries.items()}
        fixed = {n: fixed_bag_cells(os.path.join(out, n)) for n in folders}
        best_fixed = {n: max((float(figure.split()[0]) for _, figure in by_preset.values()), default=None)
                      for n, by_preset in fixed.items()}
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
                if preset in fixed[n]:  # bag size gives the class away here: the fixed-size figure leads
                    size, figure = fixed[n][preset]
                    lead = f"**{figure}**" if float(figure.split()[0]) == best_fixed[n] else figure
                    cells.append(f"{lead} ({size} per bag; whole bags {cell})")
                else:
                    cells.append(f"**{cell}**" if mean == best[n] else cell)
            text.append(f"| {paper_name(preset)} | " + " | ".join(cells) + " |")
        bag_size = [_bag_size_cell(os.path.join(out, n))[0] or "not computed" for n in folders]
        text.append("| *bag size alone, no model* | " + " | ".join("/" for _ in paper_columns) + " | "
                    + " | ".join(bag_size) + " |")
        text.append("")
        for n in folders:
            comparisons = paired_comparisons(os.path.join(out, n), read_results(os.path.join(out, n, "results.csv")),
                                             presets)
            if comparisons:
                by = {v: [f"`{p}`" for p, c in comparisons.items() if c[3] == v] for v in ("beats", "ties", "loses")}
                text.append(f"- `{n[len(table) + 1:]}`, paired 95 % intervals (its table.md): "
                            f"`{reference_of(presets)}` beats "
                            f"{', '.join(by['beats']) or 'none'}; ties {', '.join(by['ties']) or 'none'}; "
                            f"loses to {', '.join(by['loses']) or 'none'}.")
        if text[-1] != "":
            text.append("")
    write_text(os.path.join(out, "summary.md"), "\n".join(text))
    return "\n".join(text)


def _plot(path, summary, title):
    if not summary:
        return
    names = list(summary)
    figure = new_figure(max(4, 0.6 * len(names) + 1), 3.5, dpi=110)
    axis = figure.subplots()
    axis.bar(range(len(names)), [summary[n][0] for n in names], yerr=[summary[n][1] for n in names], capsize=3)
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("test AUROC")
    axis.set_title(title, fontsize=9)
    save_figure(figure, path)
